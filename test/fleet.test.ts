/**
 * Three gateways as one: the real topology from processes (test/fleet/topology.ts), checked
 * through HAProxy and through each gateway directly; each serves its proxy port from a proxy worker.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import pg from 'pg';
import t from 'tap';
import { serialize } from 'pg-protocol';
import { ADMIN_KEY, type Fleet, type GatewayProcess, call, startFleet } from './fleet/topology.ts';
import { psql, psqlError, socketFrom } from './proxy-helpers.ts';
import { until } from './helpers.ts';

interface Db {
  id: string;
  endpoint: string;
  role: string;
  password: string;
  userId: string;
  node: string;
}

// Each gateway with a proxy worker: every connection crosses a worker, its IPC to its primary and Redis.
const fleet: Fleet = await startFleet({ gateways: 3, env: { PGFLEET_WORKERS: '1' } });
t.teardown(() => fleet.stop(!t.passing()));
const [g1, g2, g3] = fleet.gateways as [GatewayProcess, GatewayProcess, GatewayProcess];
const catalog = new pg.Client({ connectionString: fleet.catalogUrl });
await catalog.connect();
t.teardown(() => catalog.end());

const partner = await call(fleet.lb.apiUrl, 'POST', '/v1/partners', ADMIN_KEY, { name: 'fleet partner' });
let partnerKey: string = partner.body.api_key;
let users = 0;

async function createDb(via: string, body: Record<string, unknown> = {}): Promise<Db> {
  const userId = `user-${++users}`;
  const r = await call(via, 'POST', '/v1/databases', partnerKey, { user_id: userId, suspend_timeout_seconds: 0, ...body });
  if (r.status !== 201) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`);
  const { rows } = await catalog.query('SELECT node_id FROM databases WHERE id = $1', [r.body.id]);
  return { id: r.body.id, endpoint: r.body.endpoint_id, role: r.body.role, password: r.body.password, userId, node: rows[0].node_id };
}

const ports = () => [['haproxy', fleet.lb.proxyPort], ...fleet.gateways.map((g) => [g.name, g.proxyPort])] as [string, number][];
const sni = (db: Db, port: number, password = db.password) =>
  `host=${db.endpoint}.localhost hostaddr=127.0.0.1 port=${port} user=${db.role} dbname=app password=${password} sslmode=verify-full sslrootcert=${fleet.caPath}`;
const noSni = (port: number, user: string, password: string, options = '') =>
  `host=127.0.0.1 port=${port} user=${user} dbname=app sslmode=require password=${password}${options ? ` options=${options}` : ''}`;

t.test('databases are placed on the nodes with the most room; any door reaches them in every connection form', async (t) => {
  const dbs = [await createDb(g1.apiUrl), await createDb(g2.apiUrl), await createDb(fleet.lb.apiUrl)];
  t.same(new Set(dbs.map((d) => d.node)), new Set(fleet.gateways.map((g) => g.nodeId)), 'one database on each node');

  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const put = await call(g2.apiUrl, 'PUT', '/v1/jwt-issuer', partnerKey, {
    issuer: 'https://auth.partner.test', audience: 'fleet', jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] },
  });
  t.equal(put.status, 200, 'partner issuer set through g2');

  const issued = await call(g1.apiUrl, 'POST', `/v1/databases/${dbs[0]!.id}/tokens`, partnerKey, {});
  t.equal(issued.status, 201);
  const gatewayToken: string = issued.body.token;
  for (const [i, db] of dbs.entries()) {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject(db.userId)
      .setIssuer('https://auth.partner.test').setAudience('fleet').setExpirationTime('5m').sign(privateKey);
    for (const [door, port] of ports()) {
      const forms: [string, string][] = [
        ['SNI', sni(db, port)],
        ['options', noSni(port, db.role, db.password, `endpoint=${db.endpoint}`)],
        ['password prefix', noSni(port, db.role, `endpoint=${db.endpoint};${db.password}`)],
        ['partner JWT', noSni(port, db.role, token)],
        ['gateway JWT (issued by g1)', noSni(port, db.role, gatewayToken)],
      ];
      for (const [form, conninfo] of i === 0 ? forms : forms.slice(0, 1)) {
        t.equal(await psql(conninfo, 'SELECT current_database()'), 'app', `${db.node} via ${door} by ${form}`);
      }
    }
  }
});

const gatewayOf = (nodeId: string) => fleet.gateways.find((g) => g.nodeId === nodeId)!;
const otherThan = (nodeId: string) => fleet.gateways.filter((g) => g.nodeId !== nodeId);

async function client(db: Db, port: number): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1', port, user: db.role, database: 'app', password: db.password,
    options: `endpoint=${db.endpoint}`, ssl: { rejectUnauthorized: false },
  });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** A CancelRequest, the way libpq sends it: plain TCP, no TLS. */
async function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  await new Promise((r) => {
    socket.once('close', r);
    socket.end(serialize.cancel(pid, secret));
  });
}

async function wakes(g: GatewayProcess): Promise<number> {
  const text = await (await fetch(`${g.apiUrl}/metrics`)).text();
  return Number(/^pgfleet_compute_wakes_total\{outcome="ok"\} (\d+)/m.exec(text)?.[1] ?? 0);
}

async function sqlstateOf(conninfo: string): Promise<string> {
  const stderr = await psqlError(conninfo);
  return stderr;
}

t.test('a CancelRequest landing on any gateway cancels a query relayed by another', async (t) => {
  const db = await createDb(g1.apiUrl);
  const [relay, ...others] = otherThan(db.node);
  for (const [door, port] of [...others.map((g) => [g.name, g.proxyPort] as const), ['haproxy', fleet.lb.proxyPort] as const]) {
    const c = await client(db, relay!.proxyPort);
    const sleeping = c.query('SELECT pg_sleep(60)');
    await until('the query to run', async () => (await psql(sni(db, relay!.proxyPort), `SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`)) === '1');
    await sendCancel(port, (c as unknown as { processID: number }).processID, (c as unknown as { secretKey: number }).secretKey);
    await t.rejects(sleeping, { code: '57014' }, `a session relayed by ${relay!.name} (compute on ${db.node}) is cancelled through ${door}`);
    await c.end();
  }
  const c = await client(db, relay!.proxyPort);
  const sleeping = c.query('SELECT pg_sleep(1)');
  await sendCancel(others[0]!.proxyPort, (c as unknown as { processID: number }).processID, 12345);
  await t.resolves(sleeping, 'a wrong secret cancels nothing');
  await c.end();
});

t.test('connections to a sleeping database on every gateway at once cause one compute start', async (t) => {
  const db = await createDb(g2.apiUrl);
  const owner = gatewayOf(db.node);
  const before = await Promise.all(fleet.gateways.map(wakes));
  const results = await Promise.all(fleet.gateways.flatMap((g) => [0, 1, 2].map(() => psql(sni(db, g.proxyPort), 'SELECT 1'))));
  t.same(results, Array(9).fill('1'), '9 connections over 3 gateways succeed');
  const after = await Promise.all(fleet.gateways.map(wakes));
  for (const [i, g] of fleet.gateways.entries()) {
    t.equal(after[i]! - before[i]!, g === owner ? 1 : 0, `${g.name}: ${g === owner ? 'one start, on the owning node' : 'no start'}`);
  }
});

t.test('max_connections counts sessions on every gateway', async (t) => {
  const db = await createDb(g3.apiUrl, { quotas: { max_connections: 2 } });
  const a = await client(db, g1.proxyPort);
  const b = await client(db, g2.proxyPort);
  t.match(await sqlstateOf(sni(db, g3.proxyPort)), /max_connections limit of 2/, 'a third session on g3 is refused');
  await a.end();
  await until('a slot to free up', async () => psql(sni(db, g3.proxyPort), 'SELECT 1').then(() => true, () => false));
  await b.end();
});

t.test('changes made through one gateway hold on the others at once', async (t) => {
  const db = await createDb(g1.apiUrl);
  const [apiDoor, connectDoor] = otherThan(db.node) as [GatewayProcess, GatewayProcess];

  // The owning node's gateway keeps the routes it served in memory: the changes below must reach that copy.
  const ownerDoor = gatewayOf(db.node);
  t.equal(await psql(sni(db, ownerDoor.proxyPort), 'SELECT 1'), '1', 'served (and its route kept) by the owning gateway first');
  t.equal(await psql(sni(db, connectDoor.proxyPort), 'SELECT 1'), '1', 'and by another');
  const reset = await call(apiDoor.apiUrl, 'POST', `/v1/databases/${db.id}/roles/${db.role}/reset_password`, partnerKey);
  t.equal(reset.status, 200);
  t.match(await psqlError(sni(db, ownerDoor.proxyPort)), /password authentication failed/, 'the old password fails at once where the route was kept');
  t.match(await psqlError(sni(db, connectDoor.proxyPort)), /password authentication failed/, 'and on another gateway');
  t.equal(await psql(sni(db, connectDoor.proxyPort, reset.body.password), 'SELECT 1'), '1', 'the new one works there');
  db.password = reset.body.password;

  const role = await call(apiDoor.apiUrl, 'POST', `/v1/databases/${db.id}/roles`, partnerKey, { name: 'reader' });
  t.equal(role.status, 201);
  t.equal(await psql(sni({ ...db, role: 'reader', password: role.body.password }, connectDoor.proxyPort), 'SELECT current_user'), 'reader',
    'a role added through one gateway logs in through another (the owning node made it)');

  // Usage through two gateways, then a quota lowered through a third: refused everywhere at once.
  await psql(sni(db, connectDoor.proxyPort), `SELECT repeat('x', 100000)`);
  await until('usage flushed', async () => (await catalog.query(`SELECT 1 FROM usage WHERE database_id = $1 AND metric = 'data_transfer_bytes'`, [db.id])).rowCount! > 0);
  t.equal((await call(apiDoor.apiUrl, 'PATCH', `/v1/databases/${db.id}`, partnerKey, { quotas: { data_transfer_bytes: 1000 } })).status, 200);
  for (const [door, port] of ports()) t.match(await psqlError(sni(db, port)), /data_transfer_bytes monthly limit of 1000/, `a lowered quota refuses via ${door}`);
  t.equal((await call(connectDoor.apiUrl, 'PATCH', `/v1/databases/${db.id}`, partnerKey, { quotas: { data_transfer_bytes: null } })).status, 200);
  t.equal(await psql(sni(db, apiDoor.proxyPort), 'SELECT 1'), '1', 'and lifting it works everywhere');

  // A quota used up through one gateway refuses on another at once (a flag every gateway reads).
  const capped = await createDb(g1.apiUrl, { quotas: { data_transfer_bytes: 50_000 } });
  const [first, second] = otherThan(capped.node) as [GatewayProcess, GatewayProcess];
  await psql(sni(capped, first.proxyPort), `SELECT repeat('x', 100000)`);
  await until('the used-up quota to be flagged in Redis', async () => (await fleet.redisGet(`pgfleet:quota:${capped.id}`)) !== null, 10_000);
  t.match(await psqlError(sni(capped, second.proxyPort)), /data_transfer_bytes monthly limit of 50000/, 'refused on another gateway');

  // Suspend and wake asked of a gateway that does not own the data: the owning node does it.
  t.equal((await call(apiDoor.apiUrl, 'POST', `/v1/databases/${db.id}/suspend`, partnerKey)).status, 200);
  const suspended = await call(connectDoor.apiUrl, 'GET', `/v1/databases/${db.id}`, partnerKey);
  t.equal(suspended.body.state, 'suspended', 'suspended on its node, as any gateway reports');
  t.equal((await call(connectDoor.apiUrl, 'POST', `/v1/databases/${db.id}/wake`, partnerKey)).status, 200);
  await until('the state to be running', async () => (await call(apiDoor.apiUrl, 'GET', `/v1/databases/${db.id}`, partnerKey)).body.state === 'running');

  // A deleted database: no gateway routes to it, and its node removed its data.
  const owner = gatewayOf(db.node);
  t.ok(findDir(owner.dataDir, db.id), 'the data is on the owning node');
  for (const [door, port] of ports()) t.equal(await psql(sni(db, port), 'SELECT 1'), '1', `served via ${door} before the delete`);
  t.equal((await call(apiDoor.apiUrl, 'DELETE', `/v1/databases/${db.id}`, partnerKey)).status, 204);
  for (const [door, port] of ports()) t.match(await psqlError(sni(db, port)), /does not exist/, `deleted: refused via ${door}`);
  t.notOk(findDir(owner.dataDir, db.id), 'its node removed the data');

  // A signing key rotated on one gateway: its new tokens verify on the others at once.
  const rotatedKid = await call(g2.apiUrl, 'POST', '/v1/keys/rotate', ADMIN_KEY);
  t.equal(rotatedKid.status, 200);
  const other = await createDb(g1.apiUrl);
  const fresh = await call(g2.apiUrl, 'POST', `/v1/databases/${other.id}/tokens`, partnerKey, {});
  t.equal(await psql(noSni(g3.proxyPort, other.role, fresh.body.token), 'SELECT current_user'), other.role, 'a token signed with g2\'s new key works on g3');
  const jwks = await (await fetch(`${g3.apiUrl}/.well-known/jwks.json`)).json() as { keys: { kid: string }[] };
  t.ok(jwks.keys.some((k) => k.kid === rotatedKid.body.kid), 'every gateway serves the fleet\'s keys');

  // A rotated partner key stops working on every gateway at once.
  const rotated = await call(g1.apiUrl, 'POST', `/v1/partners/${partner.body.id}/keys`, ADMIN_KEY);
  t.equal(rotated.status, 201);
  for (const g of fleet.gateways) t.equal((await call(g.apiUrl, 'GET', '/v1/databases', partnerKey)).status, 401, `old key refused by ${g.name}`);
  partnerKey = rotated.body.api_key;
  t.equal((await call(fleet.lb.apiUrl, 'GET', '/v1/databases', partnerKey)).status, 200);
});

function findDir(root: string, name: string): boolean {
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    if (entry.name === name) return true;
    if (findDir(path.join(root, entry.name), name)) return true;
  }
  return false;
}

t.test('branch, restore, reset and delete through a gateway whose node does not hold the data: the owning node runs them', async (t) => {
  const db = await createDb(g1.apiUrl);
  const other = fleet.gateways.find((g) => g.nodeId !== db.node)!;
  const conn = (endpoint: string) => noSni(other.proxyPort, db.role, db.password, `endpoint=${endpoint}`);
  await psql(conn(db.endpoint), 'CREATE TABLE items (id int); INSERT INTO items VALUES (1)');
  const at = await psql(conn(db.endpoint), `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
  await psql(conn(db.endpoint), 'INSERT INTO items VALUES (2)');
  const list = (endpoint: string) => psql(conn(endpoint), 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM items');

  const branch = await call(other.apiUrl, 'POST', `/v1/databases/${db.id}/branches`, partnerKey, { name: 'dev', at });
  t.equal(branch.status, 201, JSON.stringify(branch.body));
  t.match(branch.body, { name: 'dev', parent: 'main', created_at: String }, 'the answer crossed the node link whole');
  t.equal(await list(branch.body.endpoint_id), '1', 'the branch at T, made by the owning node');
  const { rows } = await catalog.query('SELECT node_id FROM databases d JOIN branches b ON b.database_id = d.id WHERE b.id = $1', [branch.body.id]);
  t.equal(rows[0].node_id, db.node, 'its data is on the owning node');

  const restored = await call(other.apiUrl, 'POST', `/v1/databases/${db.id}/restore`, partnerKey, { at });
  t.equal(restored.status, 200, JSON.stringify(restored.body));
  t.equal(await list(db.endpoint), '1', 'main restored to T');
  t.equal(await list(restored.body.before.endpoint_id), '1,2', 'the state before kept');

  const reset = await call(other.apiUrl, 'POST', `/v1/databases/${db.id}/branches/${restored.body.before.name}/reset`, partnerKey);
  t.equal(reset.status, 200, JSON.stringify(reset.body));
  t.equal(await list(restored.body.before.endpoint_id), '1', 'reset to its parent');
  const bad = await call(other.apiUrl, 'POST', `/v1/databases/${db.id}/restore`, partnerKey, { at: '2000-01-01T00:00:00Z' });
  t.equal(bad.status, 400, "the owning node's refusal comes back as it was");
  t.match(bad.body.error.message, /before the database existed/);
  t.equal((await call(other.apiUrl, 'DELETE', `/v1/databases/${db.id}/branches/dev`, partnerKey)).status, 204);
  t.equal((await call(other.apiUrl, 'GET', `/v1/databases/${db.id}/branches/dev`, partnerKey)).status, 404, 'deleted');
  // Later tests count on where new databases are placed.
  t.equal((await call(other.apiUrl, 'DELETE', `/v1/databases/${db.id}`, partnerKey)).status, 204);
});

t.test('usage relayed by several gateways adds up exactly', async (t) => {
  const db = await createDb(g1.apiUrl);
  const egress = async () => {
    const { rows } = await catalog.query(`SELECT COALESCE(sum(value), 0)::int8 AS v FROM usage WHERE database_id = $1 AND metric = 'data_transfer_bytes'`, [db.id]);
    return Number(rows[0].v);
  };
  const query = `SELECT repeat('x', 200000)`;
  await psql(sni(db, g1.proxyPort), query);
  await until('the first session flushed', async () => (await egress()) > 0);
  const one = await egress();
  await Promise.all(fleet.gateways.map((g) => psql(sni(db, g.proxyPort), query)));
  await until('every gateway flushed', async () => (await egress()) >= 4 * one, 15_000);
  t.equal(await egress(), 4 * one, `four identical sessions over three gateways: exactly 4 × ${one} bytes`);
});

t.test('Redis down and back: open sessions stay, new ones connect, nothing committed is lost, cancel across gateways returns', async (t) => {
  const db = await createDb(g2.apiUrl);
  const [relay, other] = otherThan(db.node) as [GatewayProcess, GatewayProcess];
  const open = await client(db, relay.proxyPort);
  await open.query('CREATE TABLE kept (n int)');
  await open.query('INSERT INTO kept VALUES (1)');
  const usageBefore = (await catalog.query('SELECT count(*)::int AS n, COALESCE(sum(value), 0)::int8 AS v FROM usage')).rows[0];

  await fleet.redis.kill();
  t.same((await open.query('INSERT INTO kept VALUES (2) RETURNING n')).rows, [{ n: 2 }], 'the open session goes on');
  for (const [door, port] of ports()) t.equal(await psql(sni(db, port), 'SELECT count(*) FROM kept'), '2', `a new session via ${door} while Redis is down`);
  const usageDuring = (await catalog.query('SELECT count(*)::int AS n, COALESCE(sum(value), 0)::int8 AS v FROM usage')).rows[0];
  t.ok(usageDuring.v >= usageBefore.v && usageDuring.n >= usageBefore.n, 'committed usage is in the catalog, not in Redis');

  await fleet.redis.start(); // empty: no persistence
  // Each gateway puts its cancel keys and session shares back within a heartbeat.
  const sleeping = open.query('SELECT pg_sleep(60)');
  await until('a cancel through another gateway once Redis is back', async () => {
    await sendCancel(other.proxyPort, (open as unknown as { processID: number }).processID, (open as unknown as { secretKey: number }).secretKey);
    return Promise.race([sleeping.then(() => false, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), 300))]);
  }, 30_000);
  await t.rejects(sleeping, { code: '57014' }, 'cancelled through another gateway after Redis came back empty');
  t.same((await open.query('SELECT count(*)::int AS n FROM kept')).rows, [{ n: 2 }], 'the session that lived through it still works');
  await open.end();
});

t.test('kill -9 of one gateway: the others serve; its databases answer 57P03 naming the host; it comes back', async (t) => {
  const victim = g3;
  const { rows } = await catalog.query('SELECT id FROM databases WHERE node_id = $1 LIMIT 1', [victim.nodeId]);
  const onVictim = await dbRow(rows[0].id);
  const elsewhere = await createDb(g1.apiUrl);
  t.not(elsewhere.node, victim.nodeId);
  await victim.kill9();
  for (let i = 0; i < 6; i++) t.equal(await psql(sni(elsewhere, fleet.lb.proxyPort), 'SELECT 1'), '1', `through HAProxy (${i + 1})`);
  for (const g of [g1, g2]) {
    t.equal(await psql(sni(elsewhere, g.proxyPort), 'SELECT 1'), '1', `${g.name} serves`);
    const refused = await psqlError(sni(onVictim, g.proxyPort));
    t.match(refused, /host \(node node-g3\) is unavailable/, `${g.name}: the dead node's database answers that its host is unavailable`);
  }
  t.equal((await call(fleet.lb.apiUrl, 'GET', `/v1/databases/${elsewhere.id}`, partnerKey)).status, 200, 'the API answers through HAProxy');
  await victim.restart();
  t.equal(await psql(sni(onVictim, g1.proxyPort), 'SELECT 1'), '1', 'back with its node');
});

t.test('a burst of wrong passwords spread over the gateways is limited as one', async (t) => {
  // Last: it locks this test's address out for the window.
  const db = await createDb(g1.apiUrl);
  let refusedFor: string | undefined;
  for (let i = 0; i < 40 && !refusedFor; i++) {
    const g = fleet.gateways[i % 3]!;
    const err = await psqlError(sni(db, g.proxyPort, 'wrong-password'));
    if (/too many failed authentication attempts/.test(err)) refusedFor = `${i} failures spread over 3 gateways`;
  }
  t.equal(refusedFor, '20 failures spread over 3 gateways', 'the per-address limit (20) counts across gateways');
  t.match(await psqlError(sni(db, fleet.lb.proxyPort)), /too many failed authentication attempts/, 'and holds through HAProxy');
});

async function dbRow(id: string): Promise<Db> {
  const r = await call(g1.apiUrl, 'GET', `/v1/databases/${id}`, partnerKey);
  const row = (await catalog.query('SELECT node_id FROM databases WHERE id = $1', [id])).rows[0];
  // The password was shown once, at creation: set a new one to connect with.
  const reset = await call(g1.apiUrl, 'POST', `/v1/databases/${id}/roles/${r.body.role}/reset_password`, partnerKey);
  return { id, endpoint: r.body.endpoint_id, role: r.body.role, password: reset.body.password, userId: r.body.user_id, node: row.node_id };
}

t.test('a client behind HAProxy: the gateway sees and logs the client\'s address, not the balancer\'s', async (t) => {
  const db = await createDb(fleet.lb.apiUrl);
  const client = new pg.Client({
    host: '127.0.0.1', port: fleet.lb.proxyPort, user: db.role, password: db.password, database: 'app',
    ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpoint}`, stream: () => socketFrom('127.0.0.7'),
  } as pg.ClientConfig);
  await client.connect();
  t.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1, 'served through HAProxy');
  await client.end();
  const lines = () => fleet.gateways.flatMap((g) => fs.readFileSync(path.join(fleet.root, `${g.name}.log`), 'utf8').split('\n'))
    .filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  await until('the connection line', () => lines().some((l) => l.msg === 'connection' && l.endpoint === db.endpoint));
  const line = lines().find((l) => l.msg === 'connection' && l.endpoint === db.endpoint);
  t.equal(line.client, '127.0.0.7', 'the client address came in HAProxy\'s PROXY v2 header (HAProxy itself connects from 127.0.0.9)');
});
