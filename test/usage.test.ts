import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { type Gateway, startGateway } from '../main.ts';
import { loadConfig } from '../src/config.ts';
import { routeByDatabase } from '../src/catalog/routes.ts';
import type { PgfleetError } from '../src/errors.ts';
import { directorySize } from '../src/providers/local/directory-size.ts';
import { INVALIDATE } from '../src/coord/coordinator.ts';
import type { PreparedStatement } from '../src/catalog/prepared.ts';
import { sessionsKey } from '../src/metering/usage-tracker.ts';
import { testConfig, until } from './helpers.ts';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function usageTotals(gateway: Gateway, databaseId: string): Promise<Record<string, number>> {
  const { rows } = await gateway.core.catalog.query<{ metric: string; total: number }>(
    `SELECT metric, CASE WHEN metric IN ('storage_bytes', 'connections_peak') THEN max(value) ELSE sum(value) END::bigint AS total
       FROM usage WHERE database_id = $1 GROUP BY metric`,
    [databaseId],
  );
  return Object.fromEntries(rows.map((r) => [r.metric, r.total]));
}

async function newDatabase(gateway: Gateway, quotas = {}) {
  await gateway.core.catalog.query(`INSERT INTO partners (id, name) VALUES ('p1', 'Partner') ON CONFLICT DO NOTHING`);
  const { database } = await gateway.core.databases.create({ partnerId: 'p1', userId: 'alice', quotas, suspendTimeoutSeconds: 0 });
  return database;
}

/** Holds a connection on the compute the way a proxied session does. */
async function session(gateway: Gateway, databaseId: string) {
  const route = (await routeByDatabase(gateway.core.catalog, databaseId))!;
  await gateway.core.usage.admit(route, 1000); // counted fleet-wide for max_connections
  const lease = await gateway.core.computes.acquire(gateway.core.targetFor(route));
  const socketPath = (lease.address as { socketPath: string }).socketPath;
  const client = new pg.Client({ host: path.dirname(socketPath), port: 5432, user: route.ownerRole, database: route.databaseName });
  await client.connect();
  return { route, client, end: async () => { await client.end(); lease.release(); gateway.core.usage.leave(route.databaseId); } };
}

t.test('compute time, active time, WAL and storage are counted, flushed, and survive a graceful restart exactly', async (t) => {
  const config = testConfig({ PGFLEET_USAGE_FLUSH_SECONDS: '1' });
  let gateway = await startGateway(config);
  t.teardown(() => gateway.stop());
  const db = await newDatabase(gateway);

  const s = await session(gateway, db.id);
  // Random text: the store keeps WAL and backups compressed, so a repetitive table would take little room there.
  await s.client.query(`CREATE TABLE t AS SELECT g, ${Array.from({ length: 8 }, () => 'md5(random()::text)').join(' || ')} AS pad FROM generate_series(1, 20000) g`);
  await settle(1500);
  await s.end();
  await gateway.core.computes.suspend(db.branchId);
  await gateway.core.usage.flush();

  const after = await usageTotals(gateway, db.id);
  t.ok(after.compute_time_ms! >= 1500, `compute time covers the session (${after.compute_time_ms} ms)`);
  t.ok(after.active_time_ms! >= 1500 && after.active_time_ms! <= after.compute_time_ms!, `active time ${after.active_time_ms} ms ≤ compute time`);
  t.ok(after.written_data_bytes! >= 20000 * 256, `WAL written covers the table (${after.written_data_bytes} bytes)`);
  // storage_bytes is what the store holds for the database (its WAL and base backups, compressed and sealed).
  const stored = await directorySize(path.join(config.dataDir, 'store', 'db', db.id));
  t.ok(after.storage_bytes! > 2_000_000 && after.storage_bytes! <= stored, `storage is sampled from the store (${after.storage_bytes} of ${stored} bytes there)`);
  t.equal(after.connections_peak, 1);

  await settle(1500);
  await gateway.core.usage.flush();
  t.same(await usageTotals(gateway, db.id), after, 'nothing advances while suspended');

  await gateway.stop();
  gateway = await startGateway(loadConfig({ ...process.env, PGFLEET_DATA_DIR: config.dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: 'test-admin-key-0123456789' }));
  await gateway.core.usage.flush();
  t.same(await usageTotals(gateway, db.id), after, 'a restart counts nothing twice');
});

t.test('quotas: each blocks new connections with its SQLSTATE, a raise lifts it at once', async (t) => {
  const gateway = await startGateway(testConfig({ PGFLEET_USAGE_FLUSH_SECONDS: '1' }));
  t.teardown(() => gateway.stop());
  const db = await newDatabase(gateway, { max_connections: 1 });
  const route = async () => (await routeByDatabase(gateway.core.catalog, db.id))!;

  t.equal(await gateway.core.usage.check(await route()), undefined, 'under every quota');
  const s = await session(gateway, db.id);
  // Connection quotas hold where a session is counted in (admit), the new one included.
  await t.rejects(gateway.core.usage.admit(await route(), 1000), { sqlstate: '53300', message: /max_connections limit of 1/ }, 'max_connections → 53300');
  await gateway.core.databases.update('p1', db.id, { quotas: { max_connections: 2 } });
  await gateway.core.usage.admit(await route(), 1000);
  t.equal(await gateway.core.coord.total(sessionsKey(db.id)), 2, 'raising max_connections lifts it: both sessions counted');
  gateway.core.usage.leave(db.id);
  await t.rejects(gateway.core.usage.admit(await route(), 1), { sqlstate: '53300', message: /max_client_connections is 1;/ }, 'the default client cap when the quota is unset');
  await gateway.core.databases.update('p1', db.id, { quotas: { max_client_connections: 2 } });
  await gateway.core.usage.admit(await route(), 1);
  t.equal(await gateway.core.coord.total(sessionsKey(db.id)), 2, 'the quota max_client_connections raises it: both sessions counted');
  gateway.core.usage.leave(db.id);
  t.equal(await gateway.core.coord.total(sessionsKey(db.id)), 1, 'and leave() ends the count');
  // A fleet-wide count that cannot be read refuses the session and leaves nothing counted.
  const coord = gateway.core.coord;
  const total = coord.total;
  coord.total = async () => { throw new Error('coordinator unreachable'); };
  await t.rejects(gateway.core.usage.admit(await route(), 1000), /coordinator unreachable/);
  coord.total = total;
  t.equal(await coord.total(sessionsKey(db.id)), 1, 'a refused admission is not counted');

  await s.client.query('CREATE TABLE t AS SELECT g FROM generate_series(1, 50000) g');
  await s.end();
  await gateway.core.usage.collect();
  for (const [quota, limit] of [['written_data_bytes', 1000], ['storage_bytes', 1000]] as const) {
    await gateway.core.databases.update('p1', db.id, { quotas: { [quota]: limit } });
    const over = await gateway.core.usage.check(await route());
    t.equal(over?.sqlstate, '53400', `${quota} → 53400`);
    t.match(over?.message, new RegExp(`${quota} .*of ${limit}`), 'the message names the quota and its limit');
    await gateway.core.databases.update('p1', db.id, { quotas: { [quota]: null } });
    t.equal(await gateway.core.usage.check(await route()), undefined, `${quota}: null lifts it`);
  }

  // Usage of an earlier month does not count against this month's quota.
  await gateway.core.catalog.query(
    `INSERT INTO usage (partner_id, database_id, branch_id, metric, bucket, value)
     VALUES ('p1', $1, $2, 'data_transfer_bytes', date_trunc('month', now()) - interval '1 hour', 1000000)`,
    [db.id, db.branchId],
  );
  await gateway.core.databases.update('p1', db.id, { quotas: { data_transfer_bytes: 500000 } });
  t.equal(await gateway.core.usage.check(await route()), undefined, 'last month is not this month');
});

t.test('month totals read before another gateway flushed are not kept once its message arrives', async (t) => {
  const gateway = await startGateway(testConfig({ PGFLEET_USAGE_FLUSH_SECONDS: '3600' }));
  t.teardown(() => gateway.stop());
  const db = await newDatabase(gateway, { data_transfer_bytes: 1000 });
  const route = (await routeByDatabase(gateway.core.catalog, db.id))!;
  const { catalog, coord, usage } = gateway.core;

  // The month's totals are read here, but their answer is held until another gateway has flushed and said so.
  const query = catalog.query.bind(catalog);
  let release = () => {};
  const held = new Promise<void>((resolve) => { release = resolve; });
  let monthReads = 0;
  catalog.query = (async (statement: string | PreparedStatement, values?: unknown[]) => {
    const result = await query(statement, values);
    if (typeof statement === 'string' && statement.includes('FROM usage WHERE database_id')) {
      monthReads++;
      await held;
    }
    return result;
  }) as typeof catalog.query;
  t.teardown(() => { catalog.query = query; });

  const first = usage.check(route);
  await until('the month totals to be read', () => monthReads > 0);
  await query(
    `INSERT INTO usage (partner_id, database_id, branch_id, metric, bucket, value) VALUES ('p1', $1, $2, 'data_transfer_bytes', date_trunc('hour', now()), 5000)`,
    [db.id, db.branchId],
  );
  await coord.publish(INVALIDATE, { type: 'usage', from: 'another-gateway', databases: [db.id] });
  release();
  t.equal(await first, undefined, 'the check that began before the flush answers from what it read');
  const second = await usage.check(route);
  t.equal(second?.sqlstate, '53400', 'the next check reads the flushed usage instead of keeping the stale totals');
  t.equal(monthReads, 2, 'it read the month again');
});

t.test('a running compute over its compute time quota is suspended, its sessions told why', async (t) => {
  const gateway = await startGateway(testConfig({ PGFLEET_USAGE_FLUSH_SECONDS: '1' }));
  t.teardown(() => gateway.stop());
  const db = await newDatabase(gateway, { compute_time_seconds: 2 });
  const terminated = new Promise<[string, PgfleetError]>((resolve) => gateway.core.computes.once('terminate', (b, e) => resolve([b, e])));
  const suspended = new Promise<void>((resolve) => gateway.core.computes.on('state', (b, state) => b === db.branchId && state === 'suspended' && resolve()));
  const s = await session(gateway, db.id);
  s.client.on('error', () => {});
  const [branchId, reason] = await terminated;
  await suspended;
  t.equal(branchId, db.branchId);
  t.equal(reason.sqlstate, '53400');
  t.match(reason.message, /compute_time_seconds monthly limit of 2/);
  await t.rejects(s.client.query('SELECT 1'), 'the session is ended');
  await s.end().catch(() => {});
  t.equal((await gateway.core.usage.check((await routeByDatabase(gateway.core.catalog, db.id))!))?.sqlstate, '53400', 'new connections are refused');
});
