// The store as the home of local databases, on a real S3 server: sealed objects checked on read,
// eviction and rehydration, a store outage during writes (sync and async), deletion.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { routeByDatabase } from '../src/catalog/routes.ts';
import { listAll } from '../src/storage/object-store.ts';
import { until } from './helpers.ts';
import { type ProxyFixture, type TenantDb, startProxyFixture } from './proxy-helpers.ts';
import { S3_BUCKET, type S3Server, startS3 } from './s3-server.ts';

const SYNC_TIMEOUT_S = 3;
let s3: S3Server;
let fx: ProxyFixture;

t.before(async () => {
  s3 = await startS3();
  fx = await startProxyFixture({
    PGFLEET_STORAGE_URL: s3.url('one'), PGFLEET_SECRET_KEY: crypto.randomBytes(32).toString('hex'),
    PGFLEET_LOCAL_EVICT_AFTER: '1', PGFLEET_STORAGE_SYNC_TIMEOUT: String(SYNC_TIMEOUT_S), PGFLEET_STORAGE_MAX_BACKLOG: '16',
    PGFLEET_STORAGE_REQUEST_TIMEOUT: '2', PGFLEET_WAKE_TIMEOUT: '20',
  });
});
t.teardown(async () => {
  await fx?.stop();
  await s3?.close();
});

const client = (db: TenantDb) => {
  const c = new pg.Client({
    host: '127.0.0.1', port: fx.proxy.port, user: db.role, password: db.password, database: db.database.databaseName,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpointId}`,
  });
  c.on('error', () => {});
  return c;
};
async function sql(db: TenantDb, text: string): Promise<any[]> {
  const c = client(db);
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}
const databaseDir = (db: TenantDb) => fx.core.local.layout.databaseDir('local', db.database.id);
/** The files s3rver keeps for a prefix of the bucket. */
function objectFiles(prefix: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (e.name.endsWith('._S3rver_object')) out.push(path.join(d, e.name));
    }
  };
  walk(path.join(s3.dir, S3_BUCKET, prefix));
  return out;
}

t.test('evicted after PGFLEET_LOCAL_EVICT_AFTER, nothing left on the disk; the next connection brings it back from the store; objects are sealed and checked', async (t) => {
  const db = await fx.createDatabase();
  const marker = `tenant-secret-${crypto.randomBytes(6).toString('hex')}`;
  await sql(db, `CREATE TABLE notes (body text); INSERT INTO notes SELECT '${marker}' || g FROM generate_series(1, 2000) g`);
  await fx.core.databases.suspend(fx.partnerId, db.database.id);
  await until('the idle database to be evicted', () => !fs.existsSync(databaseDir(db)), 30_000);
  t.notOk(fs.existsSync(databaseDir(db)), 'no local file is left: the database costs no disk while idle');

  const files = objectFiles(`one/db/${db.database.id}/`);
  t.ok(files.length > 0, `the store holds ${files.length} objects of the database`);
  const leaked = files.filter((f) => fs.readFileSync(f).includes(marker));
  t.same(leaked, [], 'no object holds the tenant\'s data in clear (sealed with its key)');

  t.same(await sql(db, 'SELECT count(*)::int AS n FROM notes'), [{ n: 2000 }], 'woken from the store with every row');
  t.ok(fs.existsSync(databaseDir(db)), 'its files are back in the cache');

  // An object altered in the store is refused, not used.
  await fx.core.databases.suspend(fx.partnerId, db.database.id);
  await until('evicted again', () => !fs.existsSync(databaseDir(db)), 30_000);
  // Every pack of the database is altered: which of them a wake reads depends on which backups the stops took.
  const packs = objectFiles(`one/db/${db.database.id}/packs/`).map((file) => ({ file, original: fs.readFileSync(file) }));
  for (const { file, original } of packs) {
    const altered = Buffer.from(original);
    altered[Math.floor(altered.length / 2)]! ^= 0xff;
    fs.writeFileSync(file, altered);
  }
  const err = await sql(db, 'SELECT 1').then(() => undefined, (e) => e);
  t.equal(err?.code, '57P03', 'a wake that reads an altered object fails');
  t.match(err?.message, /integrity check/, err?.message);
  for (const { file, original } of packs) fs.writeFileSync(file, original);
  await until('the wake to work again once the object is whole', async () => sql(db, 'SELECT count(*)::int AS n FROM notes').then((r) => r[0].n === 2000, () => false), 90_000, 1000);
  t.pass('the same object put back: the database wakes');
});

t.test('the store down: reads go on; a sync commit fails after its timeout, never acknowledged; an async one waits on disk up to its bound; all resumes', async (t) => {
  const syncDb = await fx.createDatabase();
  await fx.core.databases.update(fx.partnerId, syncDb.database.id, { durability: 'sync', suspendTimeoutSeconds: 0 });
  const asyncDb = await fx.createDatabase();
  await fx.core.databases.update(fx.partnerId, asyncDb.database.id, { suspendTimeoutSeconds: 0 });
  const evicted = await fx.createDatabase();
  await sql(evicted, 'CREATE TABLE t (n int)');
  await fx.core.databases.suspend(fx.partnerId, evicted.database.id);
  await until('evicted', () => !fs.existsSync(databaseDir(evicted)), 30_000);
  const s = client(syncDb);
  const a = client(asyncDb);
  await s.connect();
  await a.connect();
  await s.query('CREATE TABLE t (n int)');
  await a.query('CREATE TABLE t (n int, pad text)');
  await s.query('INSERT INTO t VALUES (1)');

  await s3.stop();
  t.same((await s.query('SELECT count(*)::int AS n FROM t')).rows, [{ n: 1 }], 'reads go on');
  await a.query(`INSERT INTO t VALUES (1, 'small')`);
  t.pass('an async commit is acknowledged while the WAL waits on the node\'s disk');
  const started = Date.now();
  const failed = await s.query('INSERT INTO t VALUES (2)').then(() => undefined, (e) => e);
  t.ok(failed, 'the sync commit is not acknowledged');
  t.equal(failed?.code, '58030', failed?.message);
  t.match(failed?.message, /storage did not take its WAL/);
  t.ok(Date.now() - started >= SYNC_TIMEOUT_S * 1000, 'after waiting its timeout');

  // Past PGFLEET_STORAGE_MAX_BACKLOG (16 MB here) an async database's commits wait too.
  await a.query(`INSERT INTO t SELECT g, repeat(md5(g::text), 40) FROM generate_series(1, 25000) g`).catch(() => {});
  await until('the async database to pass its bound', () => fx.core.local.running.backlogged(asyncDb.database.branchId), 30_000);
  const late = client(asyncDb);
  await late.connect();
  const wait = await late.query(`INSERT INTO t VALUES (0, 'after the bound')`).then(() => 'acknowledged', (e) => e.code);
  t.equal(wait, '58030', 'past its bound, an async commit waits for the store and fails when it does not come back');
  const wake = await sql(evicted, 'SELECT 1').then(() => undefined, (e) => e);
  t.equal(wake?.code, '57P03', 'an evicted database cannot wake without the store');
  t.match(wake?.message, /storage \(s3:\/\/pgfleet\/one\//, wake?.message);

  await s3.start();
  await until('the sync database to take commits again', () => sql(syncDb, 'INSERT INTO t VALUES (3)').then(() => true, () => false), 60_000, 500);
  await until('the async database to take commits again', () => sql(asyncDb, `INSERT INTO t VALUES (4, 'back')`).then(() => true, () => false), 60_000, 500);
  await until('the evicted one to wake', () => sql(evicted, 'SELECT 1').then(() => true, () => false), 60_000, 500);
  await until('the backlog to reach the store', () => (fx.core.local.running.backlog(asyncDb.database.branchId) ?? 0) === 0, 60_000, 200);
  t.pass('everything resumes once the store is back');
});

t.test('a store that hangs (no answer, no refusal): a sync commit still fails after its timeout, not after the store\'s request timeout', async (t) => {
  const db = await fx.createDatabase();
  await fx.core.databases.update(fx.partnerId, db.database.id, { durability: 'sync', suspendTimeoutSeconds: 0 });
  const c = client(db);
  await c.connect();
  await c.query('CREATE TABLE t (n int)');
  s3.pause();
  try {
    const started = Date.now();
    const failed = await c.query('INSERT INTO t VALUES (1)').then(() => undefined, (e) => e);
    t.equal(failed?.code, '58030', failed?.message);
    t.ok(Date.now() - started < 60_000, `it failed after ${Date.now() - started} ms`);
  } finally {
    s3.resume();
  }
  await until('commits to go through again', () => sql(db, 'INSERT INTO t VALUES (2)').then(() => true, () => false), 90_000, 500);
  t.pass('and resume when the store answers again');
});

t.test('past PGFLEET_LOCAL_CACHE_BYTES, the least recently stopped databases are evicted first', async (t) => {
  const capped = await startProxyFixture({
    PGFLEET_STORAGE_URL: s3.url('capped'), PGFLEET_SECRET_KEY: crypto.randomBytes(32).toString('hex'),
    PGFLEET_LOCAL_EVICT_AFTER: '86400', PGFLEET_LOCAL_CACHE_BYTES: String(40 * 1024 * 1024),
  });
  t.teardown(() => capped.stop());
  const dirOf = (db: TenantDb) => capped.core.local.layout.databaseDir('local', db.database.id);
  const dbs: TenantDb[] = [];
  for (let i = 0; i < 3; i++) {
    const db = await capped.createDatabase();
    await capped.core.databases.wake(capped.partnerId, db.database.id);
    await capped.core.databases.suspend(capped.partnerId, db.database.id);
    dbs.push(db);
  }
  // ~21 MB each: a 40 MB cache keeps the newest one, and the oldest go first.
  await until('the cache to fit its cap', () => !fs.existsSync(dirOf(dbs[0]!)) && !fs.existsSync(dirOf(dbs[1]!)), 30_000);
  t.ok(fs.existsSync(dirOf(dbs[2]!)), 'the most recently stopped stays');
  await capped.core.databases.wake(capped.partnerId, dbs[0]!.database.id);
  t.ok(fs.existsSync(dirOf(dbs[0]!)), 'an evicted one wakes from the store');
});

t.test('deleting a database deletes its objects; storage_bytes is what the store holds', async (t) => {
  const db = await fx.createDatabase();
  await sql(db, 'CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g');
  await fx.core.databases.suspend(fx.partnerId, db.database.id);
  const store = fx.core.local.opts.storage.store.store;
  const objects = await listAll(store, `db/${db.database.id}/`);
  const held = objects.reduce((n, o) => n + o.size, 0);
  t.ok(held > 0);
  const sample = await fx.core.local.sample(fx.core.targetFor((await routeByDatabase(fx.core.catalog, db.database.id))!).ref);
  t.equal(sample.storageBytes, held, `storage_bytes counts the store's objects (${held} bytes)`);
  await fx.core.databases.delete(fx.partnerId, db.database.id);
  await until('the objects to go', async () => (await listAll(store, `db/${db.database.id}/`)).length === 0, 30_000);
  t.same(objectFiles(`one/db/${db.database.id}/`), [], 'nothing of it is left in the store');
  t.notOk(fs.existsSync(databaseDir(db)), 'nor on the disk');
});
