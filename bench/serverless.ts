/**
 * One query on a warm database, as serverless clients meet it: neon() over HTTPS (POST /sql on a
 * kept HTTP connection, a pooled compute session) and a WebSocket Pool (kept session), beside
 * node-postgres on the TCP proxy with a fresh TLS connection per query and with a kept
 * connection, all in this run, interleaved round by round. A second Pool with the driver's write
 * coalescing off shows what its setTimeout(0) per write costs.
 * Run: node --import ./bin/load-ts.mjs bench/serverless.ts [queries=500]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool, neon, neonConfig } from '@neondatabase/serverless';
import pg from 'pg';
import { startProxy } from '../proxy/server.ts';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { pointDriverAt, serverlessUri } from '../test/serverless-helpers.ts';
import { percentile, printLatencyTable, type Row, timed } from './stats.ts';

const queries = Number(process.argv[2] ?? 500);
const WARMUP = 30;
const QUERY = 'SELECT 1 AS one';

type Case = Row & { run: () => Promise<unknown> };

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const config = loadConfig({ PGFLEET_DATA_DIR: dataDir, PGFLEET_LOG_LEVEL: 'warn', PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_HTTP_PORT: '0' });
const core = await startCore(config, createLogger('warn'));
const proxy = await startProxy(core);

try {
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'bench')`);
  const { database, password } = await core.databases.create({ partnerId: 'bench', userId: 'u', suspendTimeoutSeconds: 0 });
  const db = { role: database.ownerRole, password, endpointId: database.endpointId, database };
  pointDriverAt({ proxy });
  const sql = neon(serverlessUri(db));
  const pool = new Pool({ connectionString: serverlessUri(db), max: 1 });
  // The driver coalesces a tick's writes into one frame with setTimeout(0); this pool is used with
  // coalescing off (a process-wide setting, read at each write; nothing else runs meanwhile), to show that timer's share.
  const uncoalesced = new Pool({ connectionString: serverlessUri(db), max: 1 });
  const withoutCoalescing = async () => {
    neonConfig.coalesceWrites = false;
    try {
      await uncoalesced.query(QUERY);
    } finally {
      neonConfig.coalesceWrites = true;
    }
  };
  const tcpConfig: pg.ClientConfig = {
    host: '127.0.0.1', port: proxy.port, user: db.role, password, database: database.databaseName,
    ssl: { servername: `${db.endpointId}.${config.domain}`, rejectUnauthorized: false },
  };
  // An idle pooled session that ends is reported, not fatal (the run goes on; the pool reconnects).
  for (const p of [pool, uncoalesced]) p.on('error', (err: Error) => console.warn(`pool session ended at ${new Date().toISOString()}: ${err.message}`));
  const kept = new pg.Client(tcpConfig);
  await kept.connect();

  const cases: [Case, Case, Case, Case, Case] = [
    { name: 'node-postgres, TCP proxy, kept connection', samples: [], run: () => kept.query(QUERY) },
    {
      name: 'node-postgres, TCP proxy, fresh TLS connection', samples: [], run: async () => {
        const c = new pg.Client(tcpConfig);
        await c.connect();
        await c.query(QUERY);
        await c.end();
      },
    },
    { name: 'neon() over HTTPS (POST /sql)', samples: [], run: () => sql.query(QUERY) },
    { name: 'WebSocket Pool (kept session)', samples: [], run: () => pool.query(QUERY) },
    { name: 'WebSocket Pool, coalesceWrites=false', samples: [], run: withoutCoalescing },
  ];
  for (let i = 0; i < WARMUP; i++) for (const c of cases) await c.run();
  for (let i = 0; i < queries; i++) for (const c of cases) c.samples.push(await timed(c.run));
  await kept.end();
  await pool.end();
  await uncoalesced.end();

  const [keptRow, freshRow, httpRow, wsRow, wsDirectRow] = cases;
  printLatencyTable(`One query on a warm database (${queries} each, interleaved)`, cases, keptRow);
  const p50 = (r: Row) => percentile(r.samples, 50);
  console.log(`\nneon() p50 / kept TCP p50: ${(p50(httpRow) / p50(keptRow)).toFixed(2)} (goal ≤ 1.5)`);
  console.log(`fresh TLS p50 / neon() p50: ${(p50(freshRow) / p50(httpRow)).toFixed(2)} (goal ≥ 3)`);
  console.log(`WebSocket Pool p50 / kept TCP p50: ${(p50(wsRow) / p50(keptRow)).toFixed(2)} (coalesceWrites=false: ${(p50(wsDirectRow) / p50(keptRow)).toFixed(2)})`);
} finally {
  await proxy.close();
  await core.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
