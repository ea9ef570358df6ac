/**
 * `pgfleet start` with one proxy worker (PGFLEET_WORKERS=1): sessions, a cancel and the pooler go
 * through the worker's leases and the primary's coordinator; when the worker dies, the primary
 * lets its compute lease go and starts another worker on the same port.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { serialize } from 'pg-protocol';
import pg from 'pg';
import t from 'tap';
import { startProcess, tmpDataDir, until } from './helpers.ts';

const ADMIN = 'test-admin-key-0123456789';
const dataDir = tmpDataDir('workers-one');
const gw = await startProcess({
  PGFLEET_DATA_DIR: dataDir, PGFLEET_WORKERS: '1', PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0',
  PGFLEET_ADMIN_KEY: ADMIN, PGFLEET_LOG_LEVEL: 'info',
});
t.teardown(async () => {
  gw.child.kill('SIGTERM');
  await new Promise((r) => gw.child.once('exit', r));
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function api(method: string, path: string, key: string, body?: unknown): Promise<any> {
  const res = await fetch(`${gw.api}${path}`, {
    method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
  });
  return res.json();
}
const { api_key: key } = await api('POST', '/v1/partners', ADMIN, { name: 'one' });
const db = await api('POST', '/v1/databases', key, { user_id: 'u1' });
const client = (uri: string) => {
  const c = new pg.Client({ connectionString: uri.replace(/sslmode=require/, 'sslmode=no-verify'), connectionTimeoutMillis: 30_000 });
  c.on('error', () => {});
  return c;
};
const connections = async () => (await api('GET', `/v1/databases/${db.id}`, key)).connections as number;
const workerServes = async () => /^pgfleet_workers 1$/m.test(await (await fetch(`${gw.api}/metrics`)).text());

t.test('a session wakes the compute through the worker, and a cancel reaches it', async (t) => {
  const c = client(db.connection_uri);
  await c.connect();
  t.same((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
  t.equal(await connections(), 1, 'the primary counts the worker\'s session on the compute');
  const running = c.query('SELECT pg_sleep(30)').then(() => 'finished', (err: { code?: string }) => err.code);
  await new Promise((r) => setTimeout(r, 200));
  const key = c as unknown as { processID: number; secretKey: number };
  const socket = net.connect(gw.proxyPort, '127.0.0.1');
  socket.on('error', () => {});
  socket.end(serialize.cancel(key.processID, key.secretKey));
  t.equal(await running, '57014');
  await c.end();
  await until('the session to be let go', async () => (await connections()) === 0, 10_000);
});

t.test('the pooler through the worker', async (t) => {
  const c = client(db.pooled_connection_uri_no_sni);
  await c.connect();
  t.same((await c.query('SELECT 3 AS three')).rows, [{ three: 3 }]);
  await c.end();
});

t.test('a token of a key rotated in the primary connects through the worker at once', async (t) => {
  const { kid } = await api('POST', '/v1/keys/rotate', ADMIN);
  t.ok(kid, 'rotated');
  const { token } = await api('POST', `/v1/databases/${db.id}/tokens`, key, { role: db.role });
  // No endpoint in the string: the proxy then asks for a cleartext password, and the token names the database.
  const uri = new URL(db.connection_uri);
  uri.searchParams.delete('options');
  uri.password = encodeURIComponent(token);
  await until('the worker to take the new key in', async () => {
    const c = client(uri.toString());
    const ok = await c.connect().then(() => true, () => false);
    await c.end().catch(() => {});
    return ok;
  }, 3_000, 300);
  t.pass('the token verified in the worker');
});

t.test('the only worker killed: its session ends, its lease goes, a new worker serves the port', async (t) => {
  const c = client(db.connection_uri);
  await c.connect();
  await c.query('SELECT 1');
  t.ok(await connections() >= 1, 'the session (and the pooler\'s idle backend) hold the compute');
  const ended = new Promise((r) => c.once('error', r));
  const pid = Number(/pid=(\d+)/.exec(execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${gw.proxyPort} )`], { encoding: 'utf8' }))?.[1]);
  t.ok(pid > 0 && pid !== gw.child.pid, 'the session is held by a worker, not the primary');
  process.kill(pid, 'SIGKILL');
  await ended;
  await until('the dead worker\'s leases to go', async () => (await connections()) === 0, 10_000);
  await until('a worker to serve again', workerServes, 60_000, 200);
  const again = client(db.connection_uri);
  await again.connect();
  t.same((await again.query('SELECT 4 AS four')).rows, [{ four: 4 }]);
  await again.end();
});
