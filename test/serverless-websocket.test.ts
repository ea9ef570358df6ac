// Neon's serverless driver (from npm, unchanged) over pgfleet's WebSocket door: Pool and Client,
// pipelined startup, transactions, prepared statements, LISTEN/NOTIFY, cancel, JWT, bad input.
import { Client, Pool, neonConfig } from '@neondatabase/serverless';
import pg from 'pg';
import t from 'tap';
import WebSocket from 'ws';
import { startProxyFixture } from './proxy-helpers.ts';
import { pointDriverAt, serverlessUri } from './serverless-helpers.ts';
import { until } from './helpers.ts';

const f = await startProxyFixture({}, { httpPort: 0 });
t.teardown(() => f.stop());
pointDriverAt(f);
const a = await f.createDatabase();
const uri = serverlessUri(a);

/** Waits for a condition (never a fixed sleep: the machine may be loaded). */

t.test('Pool: queries with pipelined startup, an interactive transaction rolled back, a prepared statement', async (t) => {
  t.equal(neonConfig.pipelineConnect, 'password', 'the driver pipelines startup + cleartext password + first query');
  const pool = new Pool({ connectionString: uri, max: 2 });
  t.teardown(() => pool.end());
  const first = await pool.query('SELECT current_user AS u, current_database() AS db, 1 + 1 AS two');
  t.same(first.rows, [{ u: a.role, db: 'app', two: 2 }]);
  await pool.query('CREATE TABLE notes (id int PRIMARY KEY, body text)');
  await pool.query('INSERT INTO notes VALUES (1, $1)', ['kept']);

  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('INSERT INTO notes VALUES (2, $1)', ['rolled back']);
    t.equal((await client.query('SELECT count(*)::int AS n FROM notes')).rows[0].n, 2, 'the transaction sees its insert');
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
  t.same((await pool.query('SELECT id, body FROM notes ORDER BY id')).rows, [{ id: 1, body: 'kept' }], 'the rollback undid the insert');
  const pooler = new Pool({ connectionString: uri.replace(`@${a.endpointId}.`, `@${a.endpointId}-pooler.`) });
  t.same((await pooler.query('SELECT body FROM notes WHERE id = $1', [1])).rows, [{ body: 'kept' }], 'a -pooler host goes through the transaction pooler');
  await pooler.end();

  const c = await pool.connect();
  try {
    const q = { name: 'by-id', text: 'SELECT body FROM notes WHERE id = $1', values: [1] };
    t.same((await c.query(q)).rows, [{ body: 'kept' }]);
    t.same((await c.query({ ...q, values: [3] })).rows, [], 'the named statement is reused');
    t.equal((await c.query(`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'by-id'`)).rows[0].n, 1, 'prepared on the compute');
  } finally {
    c.release();
  }
});

t.test('Client without pipelining: the server asks for the password, the driver answers', async (t) => {
  const client = new Client({ connectionString: uri });
  client.neonConfig.pipelineConnect = false;
  await client.connect();
  t.same((await client.query('SELECT 42 AS answer')).rows, [{ answer: 42 }]);
  await client.end();
});

t.test('the endpoint named by options, by a wsProxy address, or by a JWT password', async (t) => {
  const viaOptions = new Client({ connectionString: `postgresql://${a.role}:${encodeURIComponent(a.password)}@localhost/app?options=endpoint%3D${a.endpointId}` });
  await viaOptions.connect();
  t.equal((await viaOptions.query('SELECT current_user AS u')).rows[0].u, a.role, 'options=endpoint=…');
  await viaOptions.end();

  // The string form of wsProxy: wss://<proxy>/v2?address=<database host>:<port>
  const viaAddress = new Client({ connectionString: uri });
  viaAddress.neonConfig.wsProxy = `localhost:${f.proxy.httpPort}/v2`;
  await viaAddress.connect();
  t.equal((await viaAddress.query('SELECT 7 AS n')).rows[0].n, 7, 'wsProxy string with ?address=');
  await viaAddress.end();

  const { token } = await f.core.jwt.tokens.issueFor(a.database, { ttlSeconds: 600 });
  const viaJwt = new Client({ connectionString: serverlessUri(a, token) });
  await viaJwt.connect();
  t.equal((await viaJwt.query('SELECT current_user AS u')).rows[0].u, a.role, 'a gateway JWT as the password');
  await viaJwt.end();
  const noHost = new Client({ connectionString: `postgresql://${a.role}:${token}@localhost/app` });
  await noHost.connect();
  t.equal((await noHost.query('SELECT 1 AS one')).rows[0].one, 1, 'the JWT alone names the database');
  await noHost.end();
});

t.test('LISTEN/NOTIFY between two WebSocket sessions', async (t) => {
  const listener = new Client({ connectionString: uri });
  await listener.connect();
  t.teardown(() => listener.end());
  await listener.query('LISTEN jobs');
  const heard = new Promise<{ channel: string; payload?: string }>((resolve) => listener.once('notification', resolve));
  const pool = new Pool({ connectionString: uri });
  await pool.query(`SELECT pg_notify('jobs', 'job 17')`);
  await pool.end();
  const n = await heard;
  t.same([n.channel, n.payload], ['jobs', 'job 17']);
});

t.test('cancel: a CancelRequest on a second WebSocket stops pg_sleep', async (t) => {
  const client = new Client({ connectionString: uri });
  await client.connect();
  t.teardown(() => client.end());
  const sleeping = client.query('SELECT pg_sleep(60)').then(() => undefined, (err) => err);
  const watcher = new Pool({ connectionString: uri });
  t.teardown(() => watcher.end());
  await until('pg_sleep to run', async () =>
    (await watcher.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`)).rows[0].n === 1);
  // node-postgres's own cancel: a new connection (here a WebSocket) carrying the session's key.
  const canceller = new Client({ connectionString: uri }) as Client & { cancel(c: Client, q: unknown): void };
  canceller.cancel(client, (client as unknown as { activeQuery: unknown }).activeQuery);
  const err = await sleeping;
  t.equal(err?.code, '57014', 'canceling statement due to user request');
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the session goes on');
});

t.test('refusals reach the driver as Postgres errors; nothing else is affected', async (t) => {
  // With pipelined startup, connect() resolves at once; the refusal comes with the first query.
  const fail = async (connectionString: string) => {
    const c = new Client({ connectionString });
    c.on('error', () => {});
    return c.connect().then(() => c.query('SELECT 1')).then(() => c.end().then(() => undefined), (err) => err);
  };
  const wrong = await fail(serverlessUri(a, 'not-the-password'));
  t.equal(wrong?.code, '28P01');
  t.match(wrong?.message, /password authentication failed for user "app_owner"/);
  const unknown = await fail(`postgresql://${a.role}:${encodeURIComponent(a.password)}@ep-no-such-endpoint-1.db.localhost/app`);
  t.equal(unknown?.code, '3D000');
  t.match(unknown?.message, /endpoint "ep-no-such-endpoint-1" does not exist/);
  const still = new Pool({ connectionString: uri });
  t.same((await still.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'good connections still work');
  await still.end();
});

/** A raw WebSocket to the door (what a broken client sends). */
function rawSocket(): Promise<WebSocket> {
  const ws = new WebSocket(`wss://127.0.0.1:${f.proxy.httpPort}/v2`, {
    rejectUnauthorized: false, headers: { Host: `${a.endpointId}.db.localhost` },
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

const closeOf = (ws: WebSocket) => new Promise<{ code: number; reason: string }>((resolve) =>
  ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));

t.test('bad frames: a text frame and a malformed startup close the WebSocket with a reason', async (t) => {
  const text = await rawSocket();
  const textClosed = closeOf(text);
  text.send('SELECT 1');
  const c1 = await textClosed;
  t.equal(c1.code, 1003);
  t.match(c1.reason, /text frames are not accepted/);

  const bad = await rawSocket();
  const badClosed = closeOf(bad);
  bad.send(Buffer.from([0, 0, 0, 3, 1, 2, 3])); // a startup packet length below the minimum
  const c2 = await badClosed;
  t.equal(c2.code, 1002, 'not Postgres at all: closed as a protocol error');
  t.match(c2.reason, /invalid length of startup packet: 3/);

  const noUser = await rawSocket();
  const noUserClosed = closeOf(noUser);
  const received: Buffer[] = [];
  noUser.on('message', (m: Buffer) => received.push(m));
  noUser.send(Buffer.from([0, 0, 0, 9, 0, 3, 0, 0, 0])); // protocol 3.0, no user
  const c3 = await noUserClosed;
  t.equal(c3.code, 1008);
  t.match(c3.reason, /no PostgreSQL user name specified/);
  t.equal(Buffer.concat(received)[0], 0x45, 'a startup Postgres can read gets its ErrorResponse first');

  const client = new pg.Client({ host: '127.0.0.1', port: f.proxy.port, user: a.role, password: a.password, database: 'app',
    ssl: { rejectUnauthorized: false }, options: `endpoint=${a.endpointId}` });
  await client.connect();
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'node-postgres on the TCP proxy is unaffected');
  await client.end();
});
