import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { psql, psqlError, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture({}, { authLimits: { perAddress: 1000, slowTargetAfter: 3, slowFailureMs: 100 } });
t.teardown(() => f.stop());
const a = await f.createDatabase();
const b = await f.createDatabase();
const port = f.proxy.port;

t.test('psql sslmode=require through the SNI URI (hostaddr) and the no-SNI URI', async (t) => {
  t.equal(await psql(f.conninfo(a), `SELECT current_user || '@' || current_database()`), `${a.role}@app`);
  t.equal(await psql(a.uriNoSni, 'SELECT 42'), '42');
});

t.test('verify-full with the generated CA, SNI and no-SNI forms; SCRAM-SHA-256-PLUS is used', async (t) => {
  t.ok(f.proxy.caPath, 'a local CA was generated');
  const ca = `sslmode=verify-full sslrootcert=${f.proxy.caPath} channel_binding=require`;
  t.equal(await psql(f.conninfo(a, ca), 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), 'f',
    'the compute side is a private socket; the client side is TLS with channel binding');
  t.equal(await psql(`${a.uriNoSni.replace('sslmode=require', 'sslmode=verify-full')}&sslrootcert=${f.proxy.caPath}&channel_binding=require`, 'SELECT 7'), '7');
  const wrongCa = await psqlError(f.conninfo(a, 'sslmode=verify-full sslrootcert=/etc/ssl/certs/ca-certificates.crt'));
  t.match(wrongCa, /certificate verify failed/);
});

t.test('wrong password and unknown role read the same', async (t) => {
  const wrong = await psqlError(f.conninfo(a).replace(`password=${a.password}`, 'password=nope'));
  t.match(wrong, `password authentication failed for user "${a.role}"`);
  const unknown = await psqlError(f.conninfo(a).replace(`user=${a.role}`, 'user=mallory'));
  t.match(unknown, 'password authentication failed for user "mallory"');
});

t.test("the role of database A on the endpoint of B is refused", async (t) => {
  const cross = f.conninfo(b).replace(`password=${b.password}`, `password=${a.password}`);
  t.match(await psqlError(cross), `password authentication failed for user "${a.role}"`);
});

t.test('SNI and options naming different endpoints are refused', async (t) => {
  const msg = await psqlError(f.conninfo(a, `options=endpoint=${b.endpointId}`));
  t.match(msg, /names endpoint .* but options name/);
  t.equal(await psql(f.conninfo(a, `options=endpoint=${a.endpointId}`), 'SELECT 1'), '1', 'the same endpoint twice is fine');
});

t.test('unknown endpoint is refused without naming others; no endpoint says how', async (t) => {
  const unknown = await psqlError(f.conninfo(a).replace(`host=${a.endpointId}`, 'host=ep-no-such-000000'));
  t.match(unknown, 'endpoint "ep-no-such-000000" does not exist');
  t.notMatch(unknown, a.endpointId);
  const none = await psqlError(`host=localhost port=${port} user=${a.role} dbname=app password=${a.password} sslmode=require`);
  t.match(none, /names no endpoint/);
  t.match(none, /options=endpoint/);
  t.match(none, /endpoint=<endpoint>;<password>/);
});

t.test('the endpoint in a password prefix (cleartext over TLS)', async (t) => {
  const conn = `host=127.0.0.1 port=${port} user=${a.role} dbname=app sslmode=require`;
  t.equal(await psql(conn, 'SELECT current_user', { PGPASSWORD: `endpoint=${a.endpointId};${a.password}` }), a.role);
  t.match(await psqlError(conn, 'SELECT 1', { PGPASSWORD: `endpoint=${a.endpointId};wrong` }), 'password authentication failed');
});

t.test('plaintext is refused with a clear error', async (t) => {
  const msg = await psqlError(f.conninfo(a).replace('sslmode=require', `sslmode=disable options=endpoint=${a.endpointId}`));
  t.match(msg, /only TLS connections/);
  t.match(msg, /sslmode=require/);
});

t.test('client parameters reach the compute; endpoint= is taken out of options', async (t) => {
  const out = await psql(f.conninfo(a, `application_name=proxytest options='endpoint=${a.endpointId} -c search_path=custom'`),
    `SELECT current_setting('application_name') || ' ' || current_setting('search_path')`, { PGTZ: 'Asia/Tokyo', PGDATESTYLE: 'German' });
  t.equal(out, 'proxytest custom');
  t.equal(await psql(f.conninfo(a), `SELECT current_setting('TimeZone') || ' ' || current_setting('DateStyle') || ' ' || current_setting('client_encoding')`,
    { PGTZ: 'Asia/Tokyo', PGDATESTYLE: 'German', PGCLIENTENCODING: 'LATIN1' }), 'Asia/Tokyo German, DMY LATIN1');
});

t.test('psql cancels pg_sleep(60) through the proxy', async (t) => {
  const child = spawn('psql', ['-X', '-d', f.conninfo(a), '-c', 'SELECT pg_sleep(60)'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // Wait until the query runs on the compute, then interrupt psql, which sends a CancelRequest.
  for (let i = 0; i < 200; i++) {
    const n = await psql(f.conninfo(a), `SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`);
    if (n === '1') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.not(code, 0);
  t.match(stderr, 'canceling statement due to user request', 'the sleep was cancelled, not finished');
});

t.test('failed attempts against an endpoint slow it down but never lock its owner out', async (t) => {
  const c = await f.createDatabase();
  const bad = f.conninfo(c).replace(`password=${c.password}`, 'password=bad');
  for (let i = 0; i < 6; i++) t.match(await psqlError(bad), 'password authentication failed');
  t.equal(await psql(f.conninfo(c), 'SELECT 1'), '1', 'the right password still gets in');
  t.equal(await psql(f.conninfo(a), 'SELECT 1'), '1', 'other endpoints are not affected');
});

t.test('one log line per connection, without secrets', async (t) => {
  const lines: any[] = [];
  const original = f.core.log;
  f.core.log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => { lines.push(JSON.parse(String(chunk))); done(); } }));
  t.teardown(() => { f.core.log = original; });
  await psql(f.conninfo(a), `SELECT repeat('x', 5000)`);
  await psqlError(f.conninfo(a).replace(`password=${a.password}`, 'password=hunter2'));
  await new Promise((r) => setTimeout(r, 100));
  const conns = lines.filter((l) => l.msg === 'connection');
  t.equal(conns.length, 2);
  t.match(conns[0], { endpoint: a.endpointId, role: a.role, client: '127.0.0.1', outcome: 'client_closed', duration_ms: Number });
  t.ok(conns[0].bytes_out > 5000 && conns[0].bytes_in > 0, 'bytes both ways');
  t.match(conns[1], { endpoint: a.endpointId, role: a.role, outcome: 'auth_failed' });
  const text = JSON.stringify(lines);
  t.notMatch(text, a.password);
  t.notMatch(text, 'hunter2');
});
