/**
 * `pgfleet start` with two proxy workers (PGFLEET_WORKERS=2), as a real process: both serve the
 * one proxy port; a cancel reaches a session whichever worker it lands on; a worker killed
 * mid-session takes only its own sessions, is started again, and the compute's session count
 * follows; /metrics answers for both workers; the serverless door (HTTP and WebSocket) is served
 * by both.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { serialize } from 'pg-protocol';
import pg from 'pg';
import t from 'tap';
import { Client, neon } from '@neondatabase/serverless';
import { fetch as undiciFetch } from 'undici';
import { startProcess, tmpDataDir, until } from './helpers.ts';
import { pointDriverAt, trustingAgent } from './serverless-helpers.ts';

const ADMIN = 'test-admin-key-0123456789';
const dataDir = tmpDataDir('workers');
const gw = await startProcess({
  PGFLEET_DATA_DIR: dataDir, PGFLEET_WORKERS: '2', PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0',
  PGFLEET_ADMIN_KEY: ADMIN, PGFLEET_LOG_LEVEL: 'info', PGFLEET_HTTP_PORT: '0',
});
t.teardown(async () => {
  gw.child.kill('SIGTERM');
  await new Promise((r) => gw.child.once('exit', r));
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function post(path: string, key: string, body: unknown): Promise<any> {
  const res = await fetch(`${gw.api}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return res.json();
}
const { api_key: key } = await post('/v1/partners', ADMIN, { name: 'workers' });
const db = await post('/v1/databases', key, { user_id: 'u1' });
const client = (uri: string) => new pg.Client({ connectionString: uri.replace(/sslmode=require/, 'sslmode=no-verify'), connectionTimeoutMillis: 30_000 });
const conn = () => client(db.connection_uri);

/** The pid of the gateway process that accepted the connection from this local port. */
function acceptedBy(localPort: number): number | undefined {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${gw.proxyPort} and dport = :${localPort} )`], { encoding: 'utf8' });
  const pid = /pid=(\d+)/.exec(out)?.[1];
  return pid ? Number(pid) : undefined;
}
const portOf = (c: pg.Client) => (c as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
const keyOf = (c: pg.Client) => c as unknown as { processID: number; secretKey: number };
const metrics = async () => (await fetch(`${gw.api}/metrics`)).text();
const connections = async () => (await (await fetch(`${gw.api}/v1/databases/${db.id}`, { headers: { authorization: `Bearer ${key}` } })).json()).connections as number;

/** Opens sessions until both workers hold some; returns them by the pid of their worker. */
async function sessionsOnBothWorkers(open = conn): Promise<Map<number, pg.Client[]>> {
  const byWorker = new Map<number, pg.Client[]>();
  for (let i = 0; i < 40 && (byWorker.size < 2 || [...byWorker.values()].some((l) => l.length < 2)); i++) {
    const c = open();
    c.on('error', () => {});
    await c.connect();
    await c.query('SELECT 1');
    // (ss may miss a socket for a moment under load: asked again until it shows.)
    await until('the session\'s socket to show', () => acceptedBy(portOf(c)) !== undefined, 5000, 20);
    const pid = acceptedBy(portOf(c))!;
    byWorker.set(pid, [...(byWorker.get(pid) ?? []), c]);
  }
  return byWorker;
}

const byWorker = await sessionsOnBothWorkers();
t.equal(byWorker.size, 2, 'the kernel spread the sessions over both workers of the one port');
const opened = [...byWorker.values()].reduce((n, l) => n + l.length, 0);
const [[pidA, onA], [pidB, onB]] = [...byWorker];

t.test('/metrics answers for the whole process', async (t) => {
  const text = await metrics();
  t.match(text, /^pgfleet_workers 2$/m);
  // Each worker's series carry its label (sessions are counted as they end; these are still open).
  t.match(text, /^pgfleet_process_resident_memory_bytes\{worker="1"\} \d+/m);
  t.match(text, /^pgfleet_process_resident_memory_bytes\{worker="2"\} \d+/m);
});

t.test('a cancel for a session on one worker, sent to the other, cancels it', async (t) => {
  const victim = onA![0]!;
  const running = victim.query('SELECT pg_sleep(30)').then(() => 'finished', (err: { code?: string }) => err.code);
  // A socket the other worker accepted: the cancel goes in on it.
  let socket: net.Socket | undefined;
  for (let i = 0; i < 40 && !socket; i++) {
    const s = net.connect(gw.proxyPort, '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    await until('the accept to show', () => acceptedBy(s.localPort!) !== undefined, 5000, 10);
    if (acceptedBy(s.localPort!) === pidB) socket = s;
    else s.destroy();
  }
  t.ok(socket, 'a connection reached the other worker');
  await new Promise((r) => setTimeout(r, 200)); // the sleep has begun on the compute
  socket!.end(serialize.cancel(keyOf(victim).processID, keyOf(victim).secretKey));
  t.equal(await running, '57014', 'the statement was canceled');
  t.same((await victim.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the session goes on');
});

t.test('a pool_size of 1 is one backend for the whole process, not one per worker', async (t) => {
  const small = await post('/v1/databases', key, { user_id: 'u2', pool_size: 1 });
  const pooled = await sessionsOnBothWorkers(() => client(small.pooled_connection_uri_no_sni));
  const [first, second] = [...pooled.values()].map((l) => l[0]!);
  await first!.query('BEGIN');
  await first!.query('SELECT 1'); // holds the pool's one backend until COMMIT
  let answered = false;
  const waiting = second!.query('SELECT 2 AS two').then((r) => {
    answered = true;
    return r.rows;
  });
  await new Promise((r) => setTimeout(r, 1000));
  t.notOk(answered, 'the other worker\'s client waits for the backend in use');
  await first!.query('COMMIT');
  t.same(await waiting, [{ two: 2 }], 'and is served once it is free');
  for (const list of pooled.values()) for (const c of list) await c.end();
});

t.test('a worker killed mid-session takes only its own sessions, and comes back', async (t) => {
  t.equal(await connections(), opened, 'the compute counts every open session of both workers');
  const ended = onA!.map((c) => new Promise((r) => c.once('error', r)));
  process.kill(pidA, 'SIGKILL');
  await Promise.all(ended);
  for (const c of onB!) t.same((await c.query('SELECT 2 AS two')).rows, [{ two: 2 }], 'a session of the other worker is served');
  await until('the dead worker\'s sessions to be let go', async () => (await connections()) === onB!.length, 10_000);
  t.equal(await connections(), onB!.length, 'the session count is the survivors\'');
  await until('the worker to be started again', async () => /^pgfleet_workers 2$/m.test(await metrics()), 60_000, 200);
  const again = await sessionsOnBothWorkers();
  t.equal(again.size, 2, 'new sessions reach both workers again');
  t.notOk(again.has(pidA), 'the dead worker\'s place is taken by a new process');
  for (const list of again.values()) for (const c of list) await c.end();
  for (const c of onB!) await c.end();
});

t.test('the serverless door: SQL over HTTP and WebSocket sessions are served by both workers', async (t) => {
  // The CA as a user gets it: from the API, without a key.
  const ca = await (await fetch(db.ca_certificate_url)).text();
  const caPath = path.join(dataDir, 'client-ca.crt');
  fs.writeFileSync(caPath, ca);
  const { fetchEndpoint } = pointDriverAt({ proxy: { caPath, httpPort: gw.httpPort } });
  const uri = `postgresql://${db.role}:${encodeURIComponent(db.password)}@${db.endpoint_id}.db.localhost/${db.database}`;
  /** HTTP requests each worker has answered (their log line's counter, labelled by worker). */
  const answeredByWorker = async () => {
    const counts = new Map<string, number>();
    for (const [, worker, n] of (await metrics()).matchAll(/^pgfleet_proxy_connections_total\{[^}]*worker="(\d+)"[^}]*\} (\d+)/gm)) {
      counts.set(worker!, (counts.get(worker!) ?? 0) + Number(n));
    }
    return counts;
  };
  const before = await answeredByWorker();
  // Each request on a connection of its own, so that the kernel hands them to either worker.
  const served = new Set<string>();
  for (let i = 0; i < 40 && served.size < 2; i++) {
    const dispatcher = trustingAgent(ca);
    const res = await undiciFetch(fetchEndpoint, {
      method: 'POST', dispatcher, headers: { 'Neon-Connection-String': uri }, body: JSON.stringify({ query: 'SELECT $1::int + 1 AS n', params: [i] }),
    });
    t.equal(res.status, 200);
    t.same(((await res.json()) as { rows: unknown[] }).rows, [{ n: i + 1 }]);
    await dispatcher.close();
    const after = await answeredByWorker();
    for (const [worker, n] of after) if (n > (before.get(worker) ?? 0)) served.add(worker);
  }
  t.equal(served.size, 2, 'HTTP queries were answered by both workers');

  const sql = neon(uri);
  const wrong = await neon(uri.replace(encodeURIComponent(db.password), 'nope'))`SELECT 1`.then(() => undefined, (e) => e);
  t.equal(wrong?.code, '28P01', 'a wrong password through a worker is 28P01');
  await sql`CREATE TABLE IF NOT EXISTS seen (n int)`;
  const ws = new Client(uri);
  await ws.connect();
  await ws.query('BEGIN');
  await ws.query('INSERT INTO seen VALUES (1), (2)');
  await ws.query('COMMIT');
  t.same((await ws.query('SELECT count(*)::int AS n FROM seen')).rows, [{ n: 2 }], 'a WebSocket session relays a transaction');
  await ws.end();
  t.same(await sql`SELECT count(*)::int AS n FROM seen`, [{ n: 2 }], 'and HTTP sees what it committed');
});
