/**
 * Session state on a `-pooler` endpoint, with a pool of one backend so that every client
 * shares it: settings tracked and replayed, refused session features, an error inside a
 * transaction, a client killed mid-transaction, cancel, the full-pool queue, idle suspend.
 */
import pg from 'pg';
import postgres from 'postgres';
import t from 'tap';
import { startProxyFixture } from './proxy-helpers.ts';
import { until } from './helpers.ts';

const f = await startProxyFixture({ PGFLEET_POOL_QUEUE_TIMEOUT: '2', PGFLEET_POOL_IDLE_TIMEOUT: '1' });
t.teardown(() => f.stop());
const a = await f.createDatabase();
await f.core.databases.update(f.partnerId, a.database.id, { poolSize: 1 });

/** node-postgres through the SNI form of the pooled endpoint. */
async function client(opts: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: a.role, password: a.password, database: 'app',
    ssl: { servername: `${a.endpointId}-pooler.${f.core.config.domain}`, rejectUnauthorized: false }, ...opts,
  });
  c.on('error', () => {});
  await c.connect();
  return c;
}

const setting = async (c: pg.Client, name: string) => (await c.query('SELECT current_setting($1) AS v', [name])).rows[0].v as string;


t.test('settings: SET is kept for its client only, startup parameters per client, rolled-back SET undone', async (t) => {
  const one = await client({ application_name: 'one', options: '-c search_path=one_schema,public' });
  const two = await client({ application_name: 'two' });
  const pid = (await one.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  t.equal((await two.query('SELECT pg_backend_pid() AS p')).rows[0].p, pid, 'both share the one backend');

  t.equal(await setting(one, 'application_name'), 'one');
  t.equal(await setting(two, 'application_name'), 'two', 'each client its own application_name on the same backend');
  t.equal(await setting(one, 'search_path'), 'one_schema,public', 'options -c search_path applied');
  t.equal(await setting(two, 'search_path'), '"$user", public');

  await one.query(`SET statement_timeout = '7s'`);
  await one.query(`SET TIME ZONE 'Asia/Tokyo'`);
  t.equal(await setting(two, 'statement_timeout'), '0', 'client two does not see client one\'s SET');
  t.equal(await setting(two, 'TimeZone'), await setting(two, 'TimeZone'), 'stable');
  t.not(await setting(two, 'TimeZone'), 'Asia/Tokyo');
  t.equal(await setting(one, 'statement_timeout'), '7s', 'client one keeps its SET across transactions');
  t.equal(await setting(one, 'TimeZone'), 'Asia/Tokyo');

  // lock_timeout, not work_mem: work_mem follows the compute's size (autoscaling), so its default is not fixed.
  await one.query('BEGIN');
  await one.query(`SET lock_timeout = '8s'`);
  await one.query('ROLLBACK');
  t.equal(await setting(one, 'lock_timeout'), '0', 'a SET rolled back with its transaction is undone');
  await one.query('BEGIN');
  await one.query(`SET LOCAL lock_timeout = '9s'`);
  t.equal(await setting(one, 'lock_timeout'), '9s');
  await one.query('COMMIT');
  t.equal(await setting(one, 'lock_timeout'), '0', 'SET LOCAL ends with the transaction');
  await one.query(`SELECT set_config('lock_timeout', '6s', false)`);
  t.equal(await setting(two, 'lock_timeout'), '0', 'set_config() does not leak either');
  t.equal(await setting(one, 'lock_timeout'), '6s');
  await one.query('RESET ALL');
  t.equal(await setting(one, 'statement_timeout'), '0', 'RESET ALL is tracked');
  await Promise.all([one.end(), two.end()]);
});

t.test('refused session features name the unpooled host; the connection stays usable', async (t) => {
  const c = await client();
  const unpooled = `${a.endpointId}.${f.core.config.domain}`;
  for (const sql of [
    'LISTEN jobs',
    'CREATE TEMP TABLE scratch (id int)',
    'SELECT pg_advisory_lock(42)',
    'DECLARE cur CURSOR WITH HOLD FOR SELECT 1',
    'PREPARE p AS SELECT 1',
  ]) {
    const err = await c.query(sql).then(() => undefined, (e) => e);
    t.equal(err?.code, '0A000', `${sql}: refused`);
    t.match(err?.hint, unpooled, `${sql}: the hint names ${unpooled}`);
  }
  // The extended protocol too (a query with parameters), inside a transaction that it aborts.
  await c.query('BEGIN');
  const err = await c.query({ text: 'SELECT pg_try_advisory_lock($1)', values: [1] }).then(() => undefined, (e) => e);
  t.equal(err?.code, '0A000', 'refused in the extended protocol');
  const aborted = await c.query('SELECT 1').then(() => undefined, (e) => e);
  t.equal(aborted?.code, '25P02', 'the transaction is aborted as Postgres would');
  await c.query('ROLLBACK');
  t.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'the connection works after refusals');

  await c.query('BEGIN');
  await c.query('CREATE TEMP TABLE scratch (id int) ON COMMIT DROP');
  await c.query('INSERT INTO scratch VALUES (1), (2)');
  t.equal((await c.query('SELECT count(*)::int AS n FROM scratch')).rows[0].n, 2, 'a temporary table for one transaction works');
  await c.query('SELECT pg_advisory_xact_lock(7)');
  t.equal((await c.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`)).rows[0].n, 1, 'transaction-level advisory locks work');
  await c.query('COMMIT');
  const other = await client();
  t.equal((await other.query(`SELECT count(*)::int AS n FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't'`)).rows[0].n, 0,
    'no temporary table is left on the shared backend');
  t.equal((await other.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`)).rows[0].n, 0, 'no advisory lock is left');
  t.equal((await other.query('DEALLOCATE ALL')).command, 'DEALLOCATE', 'DEALLOCATE ALL answered');
  t.equal((await other.query('DISCARD ALL')).command, 'DISCARD', 'DISCARD ALL answered');
  await Promise.all([c.end(), other.end()]);
});

t.test('an error inside a transaction, then a client killed mid-transaction: the backend comes back clean', async (t) => {
  await (await client()).query('CREATE TABLE ledger (id int primary key)').catch(() => {});
  const one = await client();
  await one.query('BEGIN');
  await one.query('INSERT INTO ledger VALUES (1)');
  await t.rejects(one.query('SELECT 1/0'), { code: '22012' });
  await one.query('ROLLBACK');
  const two = await client();
  t.equal((await two.query('SELECT count(*)::int AS n FROM ledger')).rows[0].n, 0, 'the failed transaction left nothing');
  t.equal((await two.query('SELECT 1 AS one')).rows[0].one, 1, 'the backend is not in an aborted transaction');

  await one.query('BEGIN');
  const pid = (await one.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  await one.query('INSERT INTO ledger VALUES (2)');
  // Killed: the socket goes without Terminate or ROLLBACK.
  (one as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  const after = await two.query('SELECT pg_backend_pid() AS p, (SELECT count(*)::int FROM ledger) AS n, txid_current_if_assigned() AS x');
  t.equal(after.rows[0].p, pid, 'the same backend was reused');
  t.equal(after.rows[0].n, 0, 'the killed client\'s insert was rolled back');
  t.equal(after.rows[0].x, null, 'and its transaction is over');
  await two.query('INSERT INTO ledger VALUES (3)');
  t.equal((await two.query('SELECT count(*)::int AS n FROM ledger')).rows[0].n, 1);
  await two.end();
});

t.test('cancel reaches the backend running that client\'s query, not another client\'s', async (t) => {
  await f.core.databases.update(f.partnerId, a.database.id, { poolSize: 2 });
  t.teardown(() => f.core.databases.update(f.partnerId, a.database.id, { poolSize: 1 }).then(() => {}));
  const sql = postgres(a.pooledUriNoSni, { max: 1, onnotice: () => {} });
  const other = await client();
  try {
    const sleeping = sql`SELECT pg_sleep(60)`;
    const running = sleeping.execute();
    const otherQuery = other.query('SELECT pg_sleep(0.5), 42 AS v');
    const watcher = await client();
    await watcher.end();
    const direct = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
    await direct.connect();
    await until('the sleep to run', async () =>
      (await direct.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`)).rows[0].n === 1);
    sleeping.cancel();
    await t.rejects(running, { code: '57014' }, 'the query was canceled');
    t.equal((await otherQuery).rows[0].v, 42, 'the other client\'s query ran to its end');
    t.equal((await sql`SELECT 5 AS v`)[0]!.v, 5, 'the canceled client goes on');
    await direct.end();
  } finally {
    await other.end();
    await sql.end();
  }
});

t.test('a full pool: the waiting client gets a NOTICE, then 53300', async (t) => {
  const holder = await client();
  await holder.query('BEGIN');
  const waiter = await client();
  const notices: string[] = [];
  waiter.on('notice', (n) => notices.push(n.message ?? ''));
  const err = await waiter.query('SELECT 1').then(() => undefined, (e) => e);
  t.equal(err?.code, '53300', 'queued too long');
  t.match(err?.message, /no pooled connection became free within 2 s/);
  t.match(notices.join('\n'), /waiting for a free connection/, 'a NOTICE said why it waited');
  await holder.query('COMMIT');
  const next = await client();
  t.equal((await next.query('SELECT 1 AS one')).rows[0].one, 1, 'the pool serves again');
  await Promise.all([holder.end(), next.end()]);
});

t.test('idle suspend: pooled clients without a transaction let the compute sleep; their next query wakes it', async (t) => {
  await f.core.databases.update(f.partnerId, a.database.id, { suspendTimeoutSeconds: 1 });
  const c = await client();
  let ended = false;
  c.on('end', () => (ended = true));
  t.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  await until('the compute to be suspended', () => f.core.computes.info(a.database.branchId).state === 'suspended');
  t.notOk(ended, 'the pooled client stayed connected through the suspend');
  t.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2, 'its next query woke the compute');
  await c.end();
});
