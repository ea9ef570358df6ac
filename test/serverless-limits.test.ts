/**
 * What one `/sql` request or one WebSocket may cost (issue 27, findings 3, 5 and 7): statements
 * per batch, time per request, nesting, a body read only once its sender is known, big bodies and
 * answers turned to and from JSON off the event loop, and small WebSocket messages before auth.
 */
import tls from 'node:tls';
import { Pool } from '@neondatabase/serverless';
import t from 'tap';
import WebSocket from 'ws';
import { fetch as undiciFetch } from 'undici';
import { SqlCodecPool } from '../proxy/serverless/sql-codec-pool.ts';
import { encodeRequest } from '../proxy/serverless/sql-codec.ts';
import { startProxyFixture } from './proxy-helpers.ts';
import { pointDriverAt, serverlessUri } from './serverless-helpers.ts';

const f = await startProxyFixture({ PGFLEET_HTTP_PORT: '0', PGFLEET_SQL_MAX_STATEMENTS: '50', PGFLEET_SQL_TIMEOUT: '1' });
t.teardown(() => f.stop());
const { fetchEndpoint, dispatcher } = pointDriverAt(f);
const db = await f.createDatabase();

async function post(body: unknown, password = db.password): Promise<{ status: number; body: any }> {
  const res = await undiciFetch(fetchEndpoint, {
    method: 'POST', dispatcher, body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'neon-connection-string': serverlessUri(db, password), 'content-type': 'application/json' },
  });
  return { status: res.status, body: await res.json() };
}

t.test('a batch over PGFLEET_SQL_MAX_STATEMENTS, params nested too deep: 400 with the reason', async (t) => {
  const batch = (n: number) => ({ queries: Array.from({ length: n }, () => ({ query: 'SELECT 1', params: [] })) });
  t.equal((await post(batch(50))).status, 200, '50 statements run');
  t.match(await post(batch(51)), { status: 400, body: { code: '54000', message: /too many statements in one batch: 51 \(PGFLEET_SQL_MAX_STATEMENTS is 50\)/ } });
  // Written out by hand: JSON.stringify itself cannot nest this deep.
  const deep = `{"query":"SELECT $1","params":[${'['.repeat(50_000)}1${']'.repeat(50_000)}]}`;
  t.match(await post(deep), { status: 400, body: { code: '54000', message: /nested more than 6 deep/ } }, '50,000 nested arrays');
  const obj = `{"query":"SELECT $1","params":[${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}]}`;
  t.match(await post(obj), { status: 400, body: { code: '54000', message: /nested too deeply/ } }, '50,000 nested objects');
  t.match(await post({ query: 'SELECT $1::int[] AS a', params: [[[1, 2], [3, 4]]] }), { status: 200, body: { rows: [{ a: '{{1,2},{3,4}}' }] } }, 'arrays within the limit work');
});

t.test('a request over PGFLEET_SQL_TIMEOUT is cancelled with 57014; the session serves the next one', async (t) => {
  const started = Date.now();
  t.match(await post({ query: 'SELECT pg_sleep(30)', params: [] }), { status: 400, body: { code: '57014', message: /PGFLEET_SQL_TIMEOUT \(1 s\)/ } });
  t.ok(Date.now() - started < 15_000, `answered after the timeout, not the sleep (${Date.now() - started} ms)`);
  t.match(await post({ query: 'SELECT 2 AS two', params: [] }), { status: 200, body: { rows: [{ two: 2 }] } });
});

t.test('the body is not read before the password is checked', async (t) => {
  // 9 MB declared, none sent: a wrong password is answered at once, nothing is waited for or held.
  const socket = tls.connect({ host: '127.0.0.1', port: f.proxy.httpPort!, rejectUnauthorized: false });
  await new Promise((r) => socket.once('secureConnect', r));
  let reply = '';
  socket.on('data', (d) => (reply += d));
  socket.write(`POST /sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9000000\r\n`
    + `Neon-Connection-String: ${serverlessUri(db, 'wrong')}\r\n\r\n`);
  await new Promise((r) => socket.once('close', r).once('end', r));
  t.match(reply, /^HTTP\/1.1 400[\s\S]*"code":"28P01"/, 'refused before the body came');
  socket.destroy();
});

t.test('a big body is parsed off the event loop, a small one inline', async (t) => {
  const codec = new SqlCodecPool();
  t.teardown(() => codec.close());
  const body = Buffer.from(JSON.stringify({ queries: Array.from({ length: 1000 }, (_, i) => ({ query: 'SELECT $1', params: [Array.from({ length: 2000 }, () => i)] })) }));
  const inline = encodeRequest(body, { begin: 'BEGIN', maxStatements: 1000 });
  const size = body.length;
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 1);
  const encoded = await codec.encode(body, { begin: 'BEGIN', maxStatements: 1000 }); // the body moves to the worker
  const duringEncode = ticks;
  clearInterval(ticker);
  t.equal(encoded.arrayModes.length, 1000, 'all statements encoded');
  t.ok(encoded.wire.equals(inline.wire), 'the same bytes as inline encoding gives');
  t.ok(duringEncode > 0, `the event loop turned while ${size} bytes were parsed (${duringEncode} timer ticks)`);
  // An inline encode of a small body gives no turn at all: the mechanism is the worker.
  ticks = 0;
  const small = setInterval(() => ticks++, 0);
  await codec.encode(Buffer.from('{"query":"SELECT 1"}'), { begin: 'BEGIN', maxStatements: 1 });
  clearInterval(small);
  t.equal(ticks, 0, 'a small body is encoded inline');
});

t.test('WebSocket: a big message before authentication is refused (1009); after it, big messages work', async (t) => {
  const ws = new WebSocket(`wss://127.0.0.1:${f.proxy.httpPort}/v2?address=${db.endpointId}.db.localhost:5432`, { rejectUnauthorized: false });
  ws.on('error', () => {});
  await new Promise((r) => ws.once('open', r));
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  ws.send(Buffer.alloc(1024 * 1024), { binary: true });
  t.equal(await closed, 1009, 'a 1 MiB message before the startup is authenticated closes with 1009 (message too big)');

  const pool = new Pool({ connectionString: serverlessUri(db) });
  t.teardown(() => pool.end());
  await pool.query('SELECT 1'); // authenticated
  const big = 'x'.repeat(2 * 1024 * 1024);
  t.equal((await pool.query('SELECT length($1) AS n', [big])).rows[0].n, big.length, 'a 2 MiB parameter after authentication');
});
