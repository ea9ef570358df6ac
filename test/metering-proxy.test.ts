// Metering and quotas as end developers and billing meet them: through the proxy and the API.
import fs from 'node:fs';
import pg from 'pg';
import t from 'tap';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { startProcess, tmpDataDir } from './helpers.ts';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What the proxy relays for `SELECT repeat('x', 1000000)` over the simple query protocol, after the
 * handshake: RowDescription (1+4+2 + "repeat\0" + 18 = 32), DataRow (1+4+2+4 + 1,000,000),
 * CommandComplete "SELECT 1" (1+4+9 = 14), ReadyForQuery (6). TLS records are not counted.
 */
const ONE_MB_QUERY = "SELECT repeat('x', 1000000)";
const ONE_MB_ANSWER = 32 + 1_000_011 + 14 + 6;
/** The Query message: 'Q', its length, the SQL and a NUL. */
const queryBytes = (sql: string) => 1 + 4 + Buffer.byteLength(sql) + 1;

function connect(port: number, db: { endpoint_id: string; role: string; password: string; database: string }): pg.Client {
  const client = new pg.Client({
    host: '127.0.0.1', port, user: db.role, password: db.password, database: db.database,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpoint_id}`,
  });
  client.on('error', () => {});
  return client;
}

t.test('data transfer counts the bytes relayed; quotas block with their SQLSTATE and a PATCH lifts them', async (t) => {
  const api = await startApi({ PGFLEET_USAGE_FLUSH_SECONDS: '1' });
  t.teardown(() => api.stop());
  const port = api.gateway.proxyPort;
  const acme = await api.partner('acme');
  const db = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice', suspend_timeout_seconds: 0 } })).body;
  const usage = async () => (await api.request('GET', `/v1/databases/${db.id}/usage?granularity=monthly`, { key: acme.key })).body.periods[0]?.usage ?? {};

  const client = connect(port, db);
  await client.connect();
  await client.query('SELECT 1');
  await settle(1200); // a tick (1 s) brings an open session's counters into usage
  const before = await usage();
  const { rows } = await client.query(ONE_MB_QUERY);
  t.equal(rows[0].repeat.length, 1_000_000);
  await settle(1200);
  const after = await usage();
  t.equal(after.data_transfer_bytes - (before.data_transfer_bytes ?? 0), ONE_MB_ANSWER, 'egress moved by exactly the relayed answer');
  t.equal(after.ingress_bytes - (before.ingress_bytes ?? 0), queryBytes(ONE_MB_QUERY), 'ingress is counted apart');

  // Over the transfer quota: the running compute is suspended after its session is told why.
  const patch = (quotas: object) => api.request('PATCH', `/v1/databases/${db.id}`, { key: acme.key, body: { quotas } });
  t.equal((await patch({ data_transfer_bytes: 500_000 })).status, 200);
  const ended = new Promise<Error>((resolve) => client.once('error', resolve));
  const reason = await ended;
  t.match(reason.message, /data_transfer_bytes monthly limit of 500000/, 'the session gets the quota as its reason');
  const refused = connect(port, db);
  const err = await refused.connect().then(() => undefined, (e) => e);
  t.equal(err?.code, '53400', 'a new connection gets 53400');
  t.match(err?.message, /quota exceeded: data_transfer_bytes/);
  t.equal((await patch({ data_transfer_bytes: null })).status, 200);
  const lifted = connect(port, db);
  await lifted.connect();
  t.same((await lifted.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'a PATCH lifts the block at once');

  t.equal((await patch({ max_connections: 1 })).status, 200);
  const second = await connect(port, db).connect().then(() => undefined, (e) => e);
  t.equal(second?.code, '53300', 'max_connections → 53300');
  await lifted.end();

  t.equal((await patch({ max_connections: null, compute_time_seconds: 1 })).status, 200);
  const timeUp = await connect(port, db).connect().then(() => undefined, (e) => e);
  t.equal(timeUp?.code, '53400', 'compute time used up → 53400');
  t.match(timeUp?.message, /compute_time_seconds monthly limit of 1/);
});


t.test('a kill -9 of pgfleet loses at most one flush interval of usage, and a restart counts nothing twice', async (t) => {
  const dataDir = tmpDataDir();
  let gw = await startProcess({ PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'info', PGFLEET_ADMIN_KEY: ADMIN_KEY, PGFLEET_USAGE_FLUSH_SECONDS: '1' });
  // One teardown, in order: the running gateway stops (and its computes), then its files go.
  t.teardown(async () => {
    if (gw.child.exitCode === null && gw.child.signalCode === null) {
      await new Promise((resolve) => {
        gw.child.once('exit', resolve);
        gw.child.kill('SIGTERM');
      });
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const call = async (method: string, route: string, key: string, body?: object) =>
    (await fetch(`${gw.api}${route}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body) })).json() as Promise<any>;
  const partner = await call('POST', '/v1/partners', ADMIN_KEY, { name: 'acme' });
  const db = await call('POST', '/v1/databases', partner.api_key, { user_id: 'alice' });

  const client = connect(gw.proxyPort, db);
  await client.connect();
  await client.query(ONE_MB_QUERY);
  await client.end();
  await settle(2500); // more than one flush interval
  await new Promise((resolve) => {
    gw.child.once('exit', resolve);
    gw.child.kill('SIGKILL');
  });

  gw = await startProcess({ PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'info', PGFLEET_ADMIN_KEY: ADMIN_KEY, PGFLEET_USAGE_FLUSH_SECONDS: '1' });
  const usage = await call('GET', `/v1/databases/${db.id}/usage?granularity=monthly`, partner.api_key);
  // The handshake's own bytes are not counted; the session's queries are, once each.
  t.equal(usage.periods[0].usage.data_transfer_bytes, ONE_MB_ANSWER, 'the flushed usage survived the kill, counted once');
  t.equal(usage.periods[0].usage.connections, 1);
  t.ok(usage.periods[0].usage.compute_time_seconds > 0);
});
