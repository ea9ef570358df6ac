import fs from 'node:fs';
import pg from 'pg';
import postgres from 'postgres';
import t from 'tap';
import { execFileAsync, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture();
t.teardown(() => f.stop());
const a = await f.createDatabase();
const ca = fs.readFileSync(f.proxy.caPath!, 'utf8');

/** node-postgres through the SNI form: TCP to 127.0.0.1, TLS server name ep-….db.localhost, verified against the local CA. */
function pgClient(opts: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: a.role, password: a.password, database: 'app',
    ssl: { servername: `${a.endpointId}.${f.core.config.domain}`, ca }, ...opts,
  });
}

t.test('node-postgres: SNI form with channel binding, and the no-SNI URI', async (t) => {
  const c = pgClient({ enableChannelBinding: true });
  await c.connect();
  t.same((await c.query('SELECT current_user AS u, 1 + 1 AS two')).rows, [{ u: a.role, two: 2 }]);
  await c.end();
  const d = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
  await d.connect();
  t.same((await d.query('SELECT current_database() AS db')).rows, [{ db: 'app' }]);
  await d.end();
});

t.test('extended protocol: named prepared statements with parameters, reused', async (t) => {
  const c = pgClient();
  await c.connect();
  await c.query('CREATE TABLE items (id int primary key, name text, price numeric)');
  for (let i = 1; i <= 50; i++) {
    await c.query({ name: 'ins', text: 'INSERT INTO items VALUES ($1, $2, $3)', values: [i, `item ${i}`, i * 1.5] });
  }
  const r = await c.query({ name: 'sel', text: 'SELECT count(*)::int AS n, sum(price)::text AS total FROM items WHERE id <= $1', values: [10] });
  t.same(r.rows, [{ n: 10, total: '82.5' }]);
  const again = await c.query({ name: 'sel', text: 'SELECT count(*)::int AS n, sum(price)::text AS total FROM items WHERE id <= $1', values: [50] });
  t.same(again.rows, [{ n: 50, total: '1912.5' }]);
  const prepared = await c.query(`SELECT count(*)::int AS n FROM pg_prepared_statements`);
  t.equal(prepared.rows[0].n, 2, 'both statements stayed prepared on the compute session');
  await c.end();
});

t.test('postgres.js (prepared statements by default) through the no-SNI URI', async (t) => {
  const sql = postgres(a.uriNoSni, { max: 4, onnotice: () => {} });
  try {
    const rows = await sql`SELECT name FROM items WHERE id = ${7}`;
    t.same([...rows], [{ name: 'item 7' }]);
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => sql`SELECT ${i}::int AS i`));
    t.same(many.map((r) => r[0]!.i), Array.from({ length: 20 }, (_, i) => i), 'pipelined queries on a small pool');
    const [{ tz }] = await sql`SELECT current_setting('application_name') AS tz`;
    t.equal(tz, 'postgres.js', 'its application_name reached the compute');
  } finally {
    await sql.end();
  }
});

t.test('LISTEN/NOTIFY across two sessions', async (t) => {
  const listener = pgClient();
  const notifier = pgClient();
  await listener.connect();
  await notifier.connect();
  await listener.query('LISTEN jobs');
  const got = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
  await notifier.query(`NOTIFY jobs, 'job 42 done'`);
  const n = await got;
  t.equal(n.channel, 'jobs');
  t.equal(n.payload, 'job 42 done');
  await listener.end();
  await notifier.end();
});

t.test('node-postgres cancels pg_sleep(60); an unknown cancel key is ignored', async (t) => {
  const c = pgClient();
  await c.connect();
  const sleeping = c.query('SELECT pg_sleep(60)');
  const watcher = pgClient();
  await watcher.connect();
  while ((await watcher.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`)).rows[0].n === 0) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const forged = Object.assign(Object.create(c), { processID: (c as any).processID ^ 1, secretKey: (c as any).secretKey });
  (pgClient() as any).cancel(forged, (c as any).activeQuery);
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await watcher.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`)).rows[0].n, 1,
    'a forged key cancels nothing');
  (pgClient() as any).cancel(c, (c as any).activeQuery);
  await t.rejects(sleeping, /canceling statement due to user request/, 'the sleep was cancelled, not finished');
  t.same((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the session is usable after the cancel');
  await c.end();
  await watcher.end();
});

t.test('pgbench -S and -C through the proxy', async (t) => {
  const conn = f.conninfo(a);
  const env = { ...process.env, PGCONNECT_TIMEOUT: '30' };
  await execFileAsync('pgbench', ['-i', '-s', '1', '-q', conn], { env });
  const s = await execFileAsync('pgbench', ['-S', '-c', '4', '-j', '2', '-T', '3', conn], { env });
  t.match(s.stdout, /number of failed transactions: 0 /);
  t.match(s.stdout, /tps = \d+/);
  const c = await execFileAsync('pgbench', ['-S', '-C', '-c', '2', '-j', '2', '-t', '30', conn], { env });
  t.match(c.stdout, /number of transactions actually processed: 60\/60/);
  t.match(c.stdout, /number of failed transactions: 0 /);
});

t.test('sessions are exposed with byte counts while they run', async (t) => {
  const c = pgClient();
  await c.connect();
  await c.query(`SELECT repeat('x', 100000)`);
  const mine = [...f.proxy.sessions].filter((s) => s.endpointId === a.endpointId);
  t.equal(mine.length, 1);
  const s = mine[0]!;
  t.match(s, { branchId: a.database.branchId, databaseId: a.database.id, partnerId: f.partnerId, role: a.role });
  t.ok(s.bytesToClient > 100_000, `bytes to the client counted (${s.bytesToClient})`);
  t.ok(s.bytesFromClient > 20, `bytes from the client counted (${s.bytesFromClient})`);
  await c.end();
  await new Promise((r) => setTimeout(r, 100));
  t.equal([...f.proxy.sessions].filter((x) => x.endpointId === a.endpointId).length, 0, 'gone when the client leaves');
});
