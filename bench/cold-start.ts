/**
 * Cold start as an end developer feels it: connect-to-first-row through the proxy to a suspended
 * database, beside a warm connect through the proxy and beside `pg_ctl start -w` + a psql query
 * on a plain cluster, all measured in this run.
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
import { printLatencyTable, timed } from './stats.ts';

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
  for (const db of dbs) {
    cold.push(await timed(() => firstRow(db)));
    warm.push(await timed(() => firstRow(db)));
    await core.computes.suspend(db.branchId);
  }

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
} finally {
  await proxy.close();
  await core.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
