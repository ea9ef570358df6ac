// A node and its disk vanish: its databases come back on another node from the store, with every
// row committed before the lag (async) or every acknowledged row (sync). Also: a restore to a
// moment before the loss, and the lost node coming back after it was fenced.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import t from 'tap';
import { repoRoot, until } from './helpers.ts';
import { type S3Server, startS3 } from './s3-server.ts';
import { ADMIN_KEY, type Fleet, type GatewayProcess, call, startFleet } from './fleet/topology.ts';

const execFileAsync = promisify(execFile);
const MAX_LAG_S = 1;
const DEAD_AFTER_S = 6;

let s3: S3Server;
let fleet: Fleet;
let key: string;
/** The lost node's databases, served by the other node after the first test. */
let moved: any[] = [];

t.before(async () => {
  s3 = await startS3();
  fleet = await startFleet({
    gateways: 2,
    env: { PGFLEET_STORAGE_URL: s3.url('fleet'), PGFLEET_NODE_DEAD_AFTER: String(DEAD_AFTER_S), PGFLEET_STORAGE_MAX_LAG: String(MAX_LAG_S) },
  });
  key = (await call(fleet.lb.apiUrl, 'POST', '/v1/partners', ADMIN_KEY, { name: 'acme' })).body.api_key;
});
t.teardown(async () => {
  await fleet?.stop(!t.passing());
  await s3?.close();
});

/** A database placed on the given node (databases are placed where there is most room, so a few are made). */
async function databaseOn(g: GatewayProcess, durability: 'async' | 'sync'): Promise<any> {
  for (let i = 0; i < 6; i++) {
    const db = (await call(g.apiUrl, 'POST', '/v1/databases', key, { user_id: `u-${durability}-${i}`, durability, suspend_timeout_seconds: 0 })).body;
    const nodes = (await call(g.apiUrl, 'GET', '/v1/nodes', ADMIN_KEY)).body.nodes as { id: string; database_ids: string[] }[];
    if (nodes.find((n) => n.id === g.nodeId)?.database_ids.includes(db.id)) return db;
  }
  throw new Error(`no database was placed on ${g.nodeId}`);
}

function client(port: number, db: any): pg.Client {
  return new pg.Client({
    host: '127.0.0.1', port, user: db.role, password: db.password, database: db.database,
    ssl: { ca: fs.readFileSync(fleet.caPath), servername: 'localhost' }, options: `endpoint=${db.endpoint_id}`,
  });
}

/** Inserts rows one commit at a time for `ms`, recording when each was acknowledged. */
async function writeFor(port: number, db: any, ms: number): Promise<{ n: number; at: number }[]> {
  const c = client(port, db);
  await c.connect();
  await c.query('CREATE TABLE IF NOT EXISTS items (n int PRIMARY KEY, pad text)');
  const acked: { n: number; at: number }[] = [];
  const end = Date.now() + ms;
  for (let n = 1; Date.now() < end; n++) {
    await c.query('INSERT INTO items VALUES ($1::int, repeat(md5($1::text), 20))', [n]);
    acked.push({ n, at: Date.now() });
  }
  await c.end();
  return acked;
}

t.test('kill -9 of a node and its data dir: another node serves its databases from the store', async (t) => {
  const [a, b] = fleet.gateways as [GatewayProcess, GatewayProcess];
  const asyncDb = await databaseOn(a, 'async');
  const syncDb = await databaseOn(a, 'sync');
  t.equal(syncDb.durability, 'sync');
  const before = new Date();
  await new Promise((r) => setTimeout(r, 1100));
  const [asyncAcked, syncAcked] = await Promise.all([writeFor(a.proxyPort, asyncDb, 4000), writeFor(a.proxyPort, syncDb, 4000)]);
  const killedAt = Date.now();
  await a.kill9();
  fs.rmSync(a.dataDir, { recursive: true, force: true });
  t.ok(asyncAcked.length > 20 && syncAcked.length > 20, `rows written: async ${asyncAcked.length}, sync ${syncAcked.length}`);

  // Until the node is declared dead its databases answer 57P03; then they wake on B from the store.
  const count = async (db: any) => {
    const c = client(b.proxyPort, db);
    c.on('error', () => {});
    await c.connect();
    try {
      return (await c.query('SELECT count(*)::int AS n, max(n) AS top FROM items')).rows[0] as { n: number; top: number };
    } finally {
      await c.end();
    }
  };
  let asyncRows: { n: number; top: number } | undefined;
  const refusals: string[] = [];
  await until('the lost node\'s database to answer on B', async () => {
    try {
      asyncRows = await count(asyncDb);
      return true;
    } catch (err) {
      refusals.push(`${(err as { code?: string }).code}`);
      return false;
    }
  }, 120_000, 500);
  const rto = Date.now() - killedAt;
  t.ok(refusals.every((c) => c === '57P03'), `while the node was not yet declared dead, connections got 57P03 (${[...new Set(refusals)].join(', ')})`);
  const mustHave = asyncAcked.filter((r) => r.at < killedAt - MAX_LAG_S * 1000).length;
  t.ok(asyncRows!.n >= mustHave && asyncRows!.top === asyncRows!.n, `async: every row committed more than ${MAX_LAG_S} s before the kill is there (${asyncRows!.n} rows, ${mustHave} required, ${asyncAcked.length} acknowledged), with no gap`);
  const syncRows = await count(syncDb);
  t.ok(syncRows.n >= syncAcked.length, `sync: every acknowledged row is there (${syncRows.n} of ${syncAcked.length})`);
  t.comment(`served again ${rto} ms after the kill (node declared dead after ${DEAD_AFTER_S} s)`);

  const nodes = (await call(b.apiUrl, 'GET', '/v1/nodes', ADMIN_KEY)).body.nodes as { id: string; state: string; database_ids: string[] }[];
  t.equal(nodes.find((n) => n.id === a.nodeId)?.state, 'fenced', 'the lost node is listed as fenced');
  t.ok(nodes.find((n) => n.id === b.nodeId)?.database_ids.includes(asyncDb.id), 'its databases are placed on B now');
  const lost = (await call(b.apiUrl, 'GET', '/v1/events?type=node.lost', ADMIN_KEY)).body.events as { data: { node_id: string; databases: string[] } }[];
  t.equal(lost.length, 1, 'one node.lost event, however many nodes saw the silence');
  t.ok(lost[0]?.data.node_id === a.nodeId && [asyncDb.id, syncDb.id].every((id) => lost[0]!.data.databases.includes(id)), 'it names the node and its databases');

  // History survives the node: a restore to a moment before the loss reads the store.
  const restored = await call(b.apiUrl, 'POST', `/v1/databases/${asyncDb.id}/restore`, key, { at: before.toISOString() });
  t.equal(restored.status, 200, JSON.stringify(restored.body));
  const c = client(b.proxyPort, asyncDb);
  await c.connect();
  t.equal((await c.query(`SELECT to_regclass('items') IS NULL AS gone`)).rows[0].gone, true, 'restored to before the table existed');
  await c.end();

  // The lost node comes back (empty disk): it is fenced, serves nothing of its old databases, and takes new ones.
  fs.mkdirSync(a.dataDir, { mode: 0o711 });
  await a.restart();
  const again = (await call(b.apiUrl, 'GET', '/v1/nodes', ADMIN_KEY)).body.nodes as { id: string; state: string; database_ids: string[] }[];
  t.equal(again.find((n) => n.id === a.nodeId)?.state, 'live', 'it joins again');
  t.notOk(again.find((n) => n.id === a.nodeId)?.database_ids.includes(asyncDb.id), 'without its old databases');
  const through = await count(syncDb).catch(() => undefined);
  t.ok(through, 'the sync database still answers (through B)');
  const viaA = client(a.proxyPort, syncDb);
  await viaA.connect();
  t.equal((await viaA.query('SELECT count(*)::int AS n FROM items')).rows[0].n, syncRows.n, 'a connection through the returned node reaches the database on B');
  await viaA.end();
  moved = [asyncDb, syncDb];
});

t.test('drain: a node\'s databases move to the other node one at a time, each unavailable only for a suspend and a wake', async (t) => {
  const [a, b] = fleet.gateways as [GatewayProcess, GatewayProcess];
  t.equal(moved.length, 2, 'the databases of the first test are on B');
  const [quiet, busy] = moved;
  const session = client(b.proxyPort, busy);
  await session.connect();
  const before = (await session.query('SELECT count(*)::int AS n FROM items')).rows[0].n;
  const ended = new Promise<string>((resolve) => session.on('error', (err) => resolve((err as { code?: string }).code ?? 'none')));

  // The operator's way: `pgfleet nodes drain <node> --wait` (POST /v1/nodes/:id/drain, then GET /v1/nodes until it holds none).
  const cli = execFileAsync(process.execPath, [path.join(repoRoot, 'bin', 'pgfleet.js'), 'nodes', 'drain', b.nodeId, '--wait', '--url', a.apiUrl, '--key', ADMIN_KEY]);
  t.equal(await ended, '57P01', 'the open session ends with 57P01 (the database is moving)');
  const endedAt = Date.now();
  let pause = 0;
  await until('the moved database to answer again', async () => {
    const c = client(b.proxyPort, busy);
    try {
      await c.connect();
      const n = (await c.query('SELECT count(*)::int AS n FROM items')).rows[0].n;
      await c.end();
      pause = Date.now() - endedAt;
      return n === before;
    } catch {
      return false;
    }
  }, 60_000, 100);
  t.comment(`the session could connect again ${pause} ms after it ended`);
  const { stdout } = await cli;
  t.match(stdout, new RegExp(`^draining ${b.nodeId}: \\d+ databases to move\\n[^]*${b.nodeId} holds no database\\n$`), 'the CLI waited until the node held none');
  const nodes = (await call(a.apiUrl, 'GET', '/v1/nodes', ADMIN_KEY)).body.nodes as { id: string; state: string; database_ids: string[] }[];
  t.same(nodes.find((n) => n.id === b.nodeId)!.database_ids, [], 'B holds no database');
  t.ok([quiet.id, busy.id].every((id) => nodes.find((n) => n.id === a.nodeId)!.database_ids.includes(id)), 'both are placed on A');
  t.same(fs.readdirSync(`${b.dataDir}/data/local`).filter((d) => d.startsWith('db-')), [], 'B keeps no file of them');
  const woken = client(a.proxyPort, quiet);
  t.equal(await woken.connect().then(() => 'ok', (e) => e.code), 'ok', 'the suspended one wakes on A from the store');
  await woken.end();
  const fresh = (await call(b.apiUrl, 'POST', '/v1/databases', key, { user_id: 'after-drain' })).body;
  t.ok(nodes.find((n) => n.id === b.nodeId)!.state === 'draining' && !(await call(a.apiUrl, 'GET', '/v1/nodes', ADMIN_KEY)).body.nodes
    .find((n: { id: string }) => n.id === b.nodeId).database_ids.includes(fresh.id), 'a draining node takes no new database');
  await until('the node.drained event', async () => (await call(a.apiUrl, 'GET', '/v1/events?type=node.drained', ADMIN_KEY)).body.events.length === 1, 20_000, 250);
  const [drainedEvent] = (await call(a.apiUrl, 'GET', '/v1/events?type=node.drained', ADMIN_KEY)).body.events;
  t.match(drainedEvent.data, { node_id: b.nodeId, databases_left: 0 }, 'node.drained says which node and that none was left');
  t.ok(drainedEvent.data.databases_moved >= 2, `it counts the databases moved (${drainedEvent.data.databases_moved})`);
});
