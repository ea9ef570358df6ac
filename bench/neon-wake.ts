/**
 * Waking a suspended Neon endpoint, connect-to-first-row through pgfleet's proxy, both ways
 * PGFLEET_NEON_WAKE allows, against the fake Neon API (its per-endpoint proxy starts a suspended
 * compute on connect, as Neon's does), in one run:
 *   api      startProjectEndpoint, its operation awaited, then connect
 *   connect  connect at once; Neon's proxy starts the endpoint
 * Prints both and the p50 ratio api / connect (> 1: connecting straight away is faster).
 * Run: node --import ./bin/load-ts.mjs bench/neon-wake.ts [wakes=15]
 */
import fs from 'node:fs';
import pg from 'pg';
import { startProxy } from '../proxy/server.ts';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { FakeNeon } from '../test/fake-neon/fake-neon.ts';
import { neonRegionEnv } from '../test/fake-neon/pgfleet-side.ts';
import { testConfig } from '../test/helpers.ts';
import { printLatencyTable, timed } from './stats.ts';

const wakes = Number(process.argv[2] ?? 15);
const fake = await FakeNeon.start();

async function gateway(wake: 'api' | 'connect') {
  const config = testConfig({ ...neonRegionEnv(fake), PGFLEET_NEON_WAKE: wake, PGFLEET_NEON_RECONCILE_INTERVAL: '0' });
  // Each gateway sees the other's project as an orphan: only errors are worth printing.
  const core = await startCore(config, createLogger('error'));
  const proxy = await startProxy(core);
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'Bench')`);
  const { database, password } = await core.databases.create({ partnerId: 'bench', userId: wake, region: 'aws-us-east-2' });
  const firstRow = async () => {
    const client = new pg.Client({
      host: '127.0.0.1', port: proxy.port, user: database.ownerRole, password, database: database.databaseName,
      ssl: { rejectUnauthorized: false }, options: `endpoint=${database.endpointId}`,
    });
    await client.connect();
    await client.query('SELECT 1');
    await client.end();
  };
  const stop = async () => {
    await proxy.close();
    await core.stop();
    fs.rmSync(config.dataDir, { recursive: true, force: true });
  };
  return { wake, core, database, firstRow, stop };
}

const api = await gateway('api');
const connect = await gateway('connect');
const rows = [{ name: 'wake=api (start through the API, then connect)', samples: [] as number[] }, { name: 'wake=connect (Neon\'s proxy starts it)', samples: [] as number[] }];
try {
  for (const g of [api, connect]) await g.firstRow(); // warm: the project's first start
  for (let i = 0; i < wakes; i++) {
    // Alternate, so that both see the same machine load.
    for (const [g, row] of [[api, rows[0]!], [connect, rows[1]!]] as const) {
      await g.core.databases.suspend('bench', g.database.id);
      row.samples.push(await timed(g.firstRow));
    }
  }
  // The ratio column of the api row is api / connect.
  printLatencyTable(`connect-to-first-row of a suspended Neon endpoint (fake Neon API, ${wakes} wakes each)`, rows, rows[1]!);
} finally {
  await api.stop();
  await connect.stop();
  await fake.close();
}
