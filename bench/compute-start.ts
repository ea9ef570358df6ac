/**
 * How fast a compute becomes usable, beside plain Postgres in the same run:
 *   (a) materialize + first start: template copy, server start, owner role and database created
 *   (b) warm start of an existing branch
 *   (c) initdb + pg_ctl start -w (what a naive "one cluster per user" does)
 *   (d) pg_ctl start -w of an existing cluster (the floor for (b))
 * Run: node --import ./bin/load-ts.mjs bench/compute-start.ts [runs=20]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { branchRefOf, routeByDatabase } from '../src/catalog/routes.ts';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import type { BranchRef } from '../src/providers/provider.ts';
import { PlainPostgres } from './plain-postgres.ts';
import { printLatencyTable, timed } from './stats.ts';

const runs = Number(process.argv[2] ?? 20);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const config = loadConfig({ PGFLEET_DATA_DIR: dataDir, PGFLEET_LOG_LEVEL: 'warn', PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0' });
const core = await startCore(config, createLogger('warn'));
const provider = core.local;
const user = core.user;
const install = core.installs.get();
await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'bench')`);

/** A new database's main branch (catalog rows only: nothing starts). */
const newRef = async (i: number): Promise<BranchRef> => {
  const { database } = await core.databases.create({ partnerId: 'bench', userId: `user-${i}` });
  return branchRefOf((await routeByDatabase(core.catalog, database.id))!);
};

/** A query as the tenant proves the compute is usable, not merely started. */
async function firstQuery(socketPath: string): Promise<void> {
  const client = new pg.Client({ host: path.dirname(socketPath), port: 5432, user: 'app_owner', database: 'app' });
  await client.connect();
  await client.query('SELECT 1');
  await client.end();
}

const computeSettings = { shared_buffers: config.compute.sharedBuffers, max_connections: config.compute.maxConnections };

try {
  // One untimed round builds the template, as pgfleet does once per Postgres version.
  const warmup = await newRef(-1);
  await provider.start(warmup);
  await provider.stop(warmup);

  const first: number[] = [];
  const warm: number[] = [];
  const initdbStart: number[] = [];
  const pgCtlStart: number[] = [];
  for (let i = 0; i < runs; i++) {
    const ref = await newRef(i);
    first.push(await timed(async () => firstQuery(((await provider.start(ref)) as { socketPath: string }).socketPath)));
    await provider.stop(ref);
    warm.push(await timed(async () => firstQuery(((await provider.start(ref)) as { socketPath: string }).socketPath)));
    await provider.stop(ref);

    const plain = new PlainPostgres(install, user, path.join(dataDir, 'plain', String(i), 'pgdata'));
    initdbStart.push(await timed(async () => {
      await plain.initdb();
      await plain.start(computeSettings);
    }));
    await plain.stop();
    pgCtlStart.push(await timed(() => plain.start(computeSettings)));
    await plain.stop();
  }

  const baseline = { name: '(c) initdb + pg_ctl start -w', samples: initdbStart };
  printLatencyTable(`compute start, ${runs} runs each (Postgres ${install.version}, ${os.cpus().length} cores)`, [
    { name: '(a) pgfleet materialize + first start + query', samples: first },
    { name: '(b) pgfleet warm start + query', samples: warm },
    baseline,
    { name: '(d) pg_ctl start -w (existing cluster)', samples: pgCtlStart },
  ], baseline);
} finally {
  await core.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
