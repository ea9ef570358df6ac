/**
 * Warm backends of direct endpoints (proxy/warm-backends.ts): a client that leaves its backend
 * idle hands it to the next client of the same startup, and nothing of its session goes along;
 * kept backends neither keep a compute awake nor count as connections, and go when their
 * compute stops, their branch is reset, or their role's password changes. Real clients: psql and
 * node-postgres.
 */
import fs from 'node:fs';
import net from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import t from 'tap';
import { until } from './helpers.ts';
import { type TenantDb, psql, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture({ PGFLEET_WARM_BACKEND_IDLE_TIMEOUT: '30' });
t.teardown(() => f.stop());
const ca = fs.readFileSync(f.proxy.caPath!, 'utf8');
const { core } = f;

function pgClient(db: TenantDb, opts: Partial<pg.ClientConfig> = {}): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: db.role, password: db.password, database: 'app',
    ssl: { servername: `${db.endpointId}.${core.config.domain}`, ca }, ...opts,
  });
  c.on('error', () => {});
  return c;
}

/** One node-postgres session: fn's result, after a clean goodbye (Terminate). */
async function session<T>(db: TenantDb, fn: (c: pg.Client) => Promise<T>, opts: Partial<pg.ClientConfig> = {}): Promise<T> {
  const c = pgClient(db, opts);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const one = async (c: pg.Client, sql: string) => (await c.query(sql)).rows[0];
const backendPid = (db: TenantDb, extra = '') => psql(f.conninfo(db, extra), 'SELECT pg_backend_pid()').then(Number);
/** Kept backends of the database's main branch (or `branchId`) become takeable once their reset is done. */
const keptOf = (db: TenantDb) => (n: number, branchId = db.database.branchId) =>
  until(`${n} kept backend(s)`, async () => f.proxy.warm.keptCount(branchId) === n, 10_000);

t.test('the next client of the same startup gets the backend, and nothing of the last session', async (t) => {
  const db = await f.createDatabase();
  const kept = keptOf(db);
  await psql(f.conninfo(db, 'application_name=setup'), `CREATE ROLE helper; GRANT helper TO ${db.role}`);
  await kept(1);
  const first = await session(db, async (c) => {
    await c.query('CREATE TEMP TABLE scratch (x int)');
    await c.query(`SET work_mem = '77MB'`);
    await c.query(`SET TimeZone = 'Asia/Tokyo'`);
    await c.query(`SELECT set_config('app.tenant', 'acme', false)`);
    await c.query('PREPARE leftover AS SELECT 1');
    await c.query(`DECLARE held CURSOR WITH HOLD FOR SELECT 1`);
    await c.query('SELECT pg_advisory_lock(4242)');
    await c.query('LISTEN left_behind');
    await c.query('SET ROLE helper');
    t.equal((await one(c, 'SELECT current_user AS u')).u, 'helper', 'the first client switched role');
    return Number((await one(c, 'SELECT pg_backend_pid() AS pid')).pid);
  });
  await kept(2);

  const seen = new Map<string, string>();
  const next = pgClient(db);
  (next as unknown as { connection: pg.Connection }).connection.on('parameterStatus' as never, (m: { parameterName: string; parameterValue: string }) => seen.set(m.parameterName, m.parameterValue));
  await next.connect();
  t.teardown(() => next.end());
  t.equal(Number((await one(next, 'SELECT pg_backend_pid() AS pid')).pid), first, 'the same backend serves the next client');
  t.equal(f.proxy.warm.keptCount(db.database.branchId), 1, 'it is taken (the setup session\'s is still kept)');
  t.equal(seen.get('TimeZone'), (await one(next, 'SHOW TimeZone')).TimeZone, 'the startup answer reports the setting the backend has');
  t.not(seen.get('TimeZone'), 'Asia/Tokyo', 'not the last client\'s');
  t.equal(seen.get('session_authorization'), db.role);
  t.same(await one(next, 'SELECT current_user AS u, session_user AS s'), { u: db.role, s: db.role }, 'SET ROLE is undone');
  t.equal((await one(next, `SELECT to_regclass('pg_temp.scratch') AS r`)).r, null, 'the temporary table is gone');
  t.not((await one(next, 'SHOW work_mem')).work_mem, '77MB', 'SET values are reset');
  t.not((await one(next, `SELECT current_setting('app.tenant', true) AS v`)).v, 'acme', 'a custom setting\'s value is gone');
  t.equal((await one(next, 'SELECT count(*)::int AS n FROM pg_prepared_statements')).n, 0, 'no prepared statement');
  t.equal((await one(next, 'SELECT count(*)::int AS n FROM pg_cursors')).n, 0, 'no cursor');
  t.equal((await one(next, `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`)).n, 0, 'no advisory lock held');
  t.same((await next.query('SELECT pg_listening_channels() AS c')).rows, [], 'listening to nothing');
  const notified: string[] = [];
  next.on('notification', (n) => notified.push(n.channel));
  t.equal(await psql(f.conninfo(db, 'application_name=other'), `SELECT pg_try_advisory_lock(4242)`), 't', 'another session can take the lock');
  await psql(f.conninfo(db, 'application_name=other'), 'NOTIFY left_behind');
  await one(next, 'SELECT 1 AS x');
  t.same(notified, [], 'a NOTIFY on the old channel does not reach the next client');
});

t.test('different startup parameters, a transaction left open, changed role settings and logins: a new backend', async (t) => {
  const db = await f.createDatabase();
  const kept = keptOf(db);
  const alpha = 'application_name=alpha';
  const first = await backendPid(db, alpha);
  await kept(1);
  t.not(await backendPid(db, 'application_name=beta'), first, 'another application_name gets a backend of its own');
  t.equal(await backendPid(db, alpha), first, 'the same startup gets the kept backend');
  await kept(2);

  const inTransaction = await psql(f.conninfo(db, alpha), 'BEGIN; SELECT pg_backend_pid()');
  t.equal(Number(inTransaction.split('\n').at(-1)), first, 'a client leaves a transaction open');
  await kept(1);
  const next = await backendPid(db, alpha);
  t.not(next, first, 'a backend left in a transaction is not handed on');
  await kept(2);

  // Changed through the beta backend: the alpha one kept meanwhile started with the old settings.
  await psql(f.conninfo(db, 'application_name=beta'), `ALTER ROLE ${db.role} SET work_mem = '5MB'`);
  await kept(2);
  t.equal(await psql(f.conninfo(db, alpha), 'SHOW work_mem'), '5MB', 'a role setting changed since a kept backend started holds, as for a new backend');
  t.not(await backendPid(db, alpha), next, 'the stale backend went');

  const reader = await core.databases.addRole(f.partnerId, db.database.id, 'reader');
  const asReader = { ...db, role: 'reader', password: reader.password };
  await backendPid(asReader);
  await kept(1);
  await psql(f.conninfo(db, 'application_name=beta'), 'ALTER DATABASE app CONNECTION LIMIT 0');
  await t.rejects(backendPid(asReader), /too many connections for database "app"/, 'a database that takes no more connections refuses, kept backend or not');
});

/** A CancelRequest, as libpq sends it: plain TCP. */
async function sendCancel(pid: number, secret: number): Promise<void> {
  const socket = net.connect(f.proxy.port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  await new Promise((r) => {
    socket.once('close', r);
    socket.end(serialize.cancel(pid, secret));
  });
}

t.test('cancel reaches the backend of the client that asks, and only while it is its client', async (t) => {
  const db = await f.createDatabase();
  const kept = keptOf(db);
  const before = pgClient(db);
  await before.connect();
  const oldKey = { pid: (before as any).processID as number, secret: (before as any).secretKey as number };
  await before.end();
  await kept(1);

  const c = pgClient(db);
  await c.connect();
  t.equal((c as any).processID, oldKey.pid, 'the kept backend\'s real pid, as its last client was told');
  t.not((c as any).secretKey, oldKey.secret, 'a new client gets a cancel key of its own: a fresh secret');
  const quick = c.query('SELECT pg_sleep(0.5) AS slept');
  await sendCancel(oldKey.pid, oldKey.secret);
  t.same((await quick).rows, [{ slept: '' }], 'the last client\'s key cancels nothing of the next one');
  const sleeping = c.query('SELECT pg_sleep(60)');
  await until('the sleep to run', async () => (await psql(f.conninfo(db, 'application_name=watch'), `SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`)) === '1');
  await sendCancel((c as any).processID, (c as any).secretKey);
  await t.rejects(sleeping, /canceling statement due to user request/, 'its own key cancels its query on the kept backend');
  await c.end();
});

t.test('kept backends are no connections: quotas, idle suspend, and they go with their compute', async (t) => {
  const db = await f.createDatabase();
  const kept = keptOf(db);
  await core.databases.update(f.partnerId, db.database.id, { quotas: { max_connections: 1 }, suspendTimeoutSeconds: 1 });
  await psql(f.conninfo(db), 'SELECT 1');
  await kept(1);
  t.equal(core.computes.info(db.database.branchId).connections, 0, 'the compute counts no connection for it');
  t.equal(await psql(f.conninfo(db), 'SELECT 1'), '1', 'max_connections 1: a client still gets in');
  await kept(1);
  await until('the idle compute to suspend', async () => core.computes.info(db.database.branchId).state === 'suspended', 20_000);
  t.equal(f.proxy.warm.keptCount(db.database.branchId), 0, 'its kept backend went with it');
});

t.test('a password reset and a branch reset drop kept backends', async (t) => {
  const db = await f.createDatabase();
  const kept = keptOf(db);
  const first = await backendPid(db);
  await kept(1);
  const { password } = await core.databases.resetPassword(f.partnerId, db.database.id, db.role);
  t.equal(f.proxy.warm.keptCount(db.database.branchId), 0, 'the password reset closed it');
  t.not(await backendPid({ ...db, password }), first, 'the next client gets a new backend');

  const branch = await core.branches.create(f.partnerId, db.database.id, { name: 'dev' });
  const dev = { ...db, password, endpointId: branch.endpointId };
  const onDev = await backendPid(dev);
  await kept(1, branch.id);
  await core.branches.reset(f.partnerId, db.database.id, 'dev');
  t.equal(f.proxy.warm.keptCount(branch.id), 0, 'the branch reset closed the branch\'s kept backend');
  t.not(await backendPid(dev), onDev, 'after the branch reset its client gets a new backend');
});

t.test('a compute full of kept backends makes room for a new startup', async (t) => {
  // A compute of the smallest size, so that a few kept backends fill it.
  const small = await startProxyFixture({ PGFLEET_COMPUTE_MAX_CONNECTIONS: '5' });
  t.teardown(() => small.stop());
  const db = await small.createDatabase();
  const pid = (extra: string) => psql(small.conninfo(db, extra), 'SELECT pg_backend_pid()').then(Number);
  const limit = Number(await psql(small.conninfo(db, 'application_name=probe'),
    `SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int - current_setting('reserved_connections')::int`));
  t.ok(limit >= 1 && limit < small.core.config.warm.maxPerCompute, `the compute takes ${limit} tenant connections, fewer than may be kept`);
  for (let i = 1; i < limit; i++) await pid(`application_name=fill${i}`);
  await until('the compute to be full of kept backends', async () => small.proxy.warm.keptCount(db.database.branchId) === limit, 10_000);
  t.ok(await pid('application_name=newcomer'), 'a client of another startup is served: kept backends made room');
  t.ok(small.proxy.warm.keptCount(db.database.branchId) < limit, 'some went');
});
