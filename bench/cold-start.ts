/**
 * Cold start as an end developer feels it: connect-to-first-row through the proxy to a suspended
 * database, beside a warm connect through the proxy and beside `pg_ctl start -w` + a psql query
 * on a plain cluster, all measured in this run; and how long the gateway's event loop stalls during a
 * cold wake (every session it relays waits that long) beside during a warm connect.
 * Run: node --import ./bin/load-ts.mjs bench/cold-start.ts [wakes=50]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startProxy } from '../proxy/server.ts';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { PlainPostgres } from './plain-postgres.ts';
import { percentile, printLatencyTable, timed } from './stats.ts';

const wakes = Number(process.argv[2] ?? 50);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const config = loadConfig({ PGFLEET_DATA_DIR: dataDir, PGFLEET_LOG_LEVEL: 'warn', PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_MAX_COMPUTES: String(wakes + 5) });
const core = await startCore(config, createLogger('warn'));
const proxy = await startProxy(core);

async function firstRow(db: { endpointId: string; role: string; password: string; databaseName: string }): Promise<void> {
  const client = new pg.Client({
    host: '127.0.0.1', port: proxy.port, user: db.role, password: db.password, database: db.databaseName,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpointId}`,
  });
  await client.connect();
  await client.query('SELECT 1');
  await client.end();
}

try {
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'bench')`);
  const dbs = [];
  for (let i = 0; i < wakes; i++) {
    const { database, password } = await core.databases.create({ partnerId: 'bench', userId: `u${i}`, suspendTimeoutSeconds: 0 });
    const db = { endpointId: database.endpointId, role: database.ownerRole, password, databaseName: database.databaseName, branchId: database.branchId };
    await firstRow(db); // the first start materializes the branch; later wakes are what users meet
    await core.computes.suspend(db.branchId);
    dbs.push(db);
  }

  const cold: number[] = [];
  const warm: number[] = [];
  // The gaps between the turns of a 1 ms timer: how long the loop was held elsewhere.
  const coldLoop: number[] = [];
  const warmLoop: number[] = [];
  let gaps: number[] | undefined;
  let lastTurn = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    gaps?.push(now - lastTurn);
    lastTurn = now;
  }, 1);
  const watched = async (into: number[], fn: () => Promise<void>) => {
    gaps = into;
    try {
      return await timed(fn);
    } finally {
      gaps = undefined;
    }
  };
  for (const db of dbs) {
    cold.push(await watched(coldLoop, () => firstRow(db)));
    warm.push(await watched(warmLoop, () => firstRow(db)));
    await core.computes.suspend(db.branchId);
  }
  clearInterval(ticker);

  // Baseline: a plain cluster started with pg_ctl start -w, then a psql query, as a script would.
  const plain = new PlainPostgres(core.installs.get(), core.user, path.join(dataDir, 'plain', 'pgdata'));
  await plain.initdb();
  const baseline: number[] = [];
  for (let i = 0; i < Math.min(wakes, 20); i++) {
    baseline.push(await timed(async () => {
      await plain.start();
      await plain.psql('SELECT 1');
    }));
    await plain.stop();
  }

  const base = { name: 'pg_ctl start -w + psql SELECT 1', samples: baseline };
  printLatencyTable(`connect-to-first-row, ${wakes} databases (Postgres ${core.installs.get().version}, ${os.cpus().length} cores)`, [
    { name: 'pgfleet cold: suspended → first row (TLS)', samples: cold },
    { name: 'pgfleet warm: running → first row (TLS)', samples: warm },
    base,
  ], base);
  console.log('goal: cold p50 ≤ 100 ms, p99 ≤ 250 ms');
  const stalls = (gaps: number[]) => `p99 ${percentile(gaps, 99).toFixed(1)} ms, longest ${Math.max(...gaps).toFixed(1)} ms`;
  console.log(`the gateway's event loop (the bench's client shares it) was held, between turns of a 1 ms timer, during cold wakes: ${stalls(coldLoop)};`
    + ` during warm connects: ${stalls(warmLoop)}; ratio of p99s ${(percentile(coldLoop, 99) / percentile(warmLoop, 99)).toFixed(2)}`);
} finally {
  await proxy.close();
  await core.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
