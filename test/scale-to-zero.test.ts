import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { routeByDatabase } from '../src/catalog/routes.ts';
import { type ProxyFixture, type TenantDb, startProxyFixture } from './proxy-helpers.ts';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

function client(fx: ProxyFixture, db: TenantDb): pg.Client {
  return new pg.Client({
    host: '127.0.0.1', port: fx.proxy.port, user: db.role, password: db.password, database: db.database.databaseName,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpointId}`,
  });
}

async function query(fx: ProxyFixture, db: TenantDb, sql: string): Promise<pg.QueryResult> {
  const c = client(fx, db);
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

/** The error a connection attempt ends with. */
async function connectError(fx: ProxyFixture, db: TenantDb): Promise<{ code?: string; message: string }> {
  const c = client(fx, db);
  c.on('error', () => {});
  try {
    await c.connect();
    await c.end();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('the connection succeeded');
}

function untilState(fx: ProxyFixture, branchId: string, state: string): Promise<void> {
  return new Promise((resolve) => {
    if (fx.core.computes.info(branchId).state === state) return resolve();
    const on = (b: string, s: string) => {
      if (b !== branchId || s !== state) return;
      fx.core.computes.off('state', on);
      resolve();
    };
    fx.core.computes.on('state', on);
  });
}

const withTimeout = async (fx: ProxyFixture, db: TenantDb, seconds: number) => {
  await fx.core.databases.update(fx.partnerId, db.database.id, { suspendTimeoutSeconds: seconds });
};

t.test('50 simultaneous connections to a suspended database: one start, 50 successes', async (t) => {
  const fx = await startProxyFixture({ PGFLEET_COMPUTE_MAX_CONNECTIONS: '70' });
  t.teardown(() => fx.stop());
  const db = await fx.createDatabase();
  let wakes = 0;
  fx.core.computes.on('wake', (branchId: string) => branchId === db.database.branchId && wakes++);
  const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => query(fx, db, `SELECT ${i} AS i`)));
  t.same(results.map((r) => r.status === 'fulfilled' && r.value.rows[0].i), Array.from({ length: 50 }, (_, i) => i), '50 successes');
  t.equal(wakes, 1, 'exactly one start');
});

t.test('idle suspend after the timeout, wake with the data intact; idle-in-transaction is never cut', async (t) => {
  const fx = await startProxyFixture();
  t.teardown(() => fx.stop());
  const db = await fx.createDatabase();
  await withTimeout(fx, db, 1);
  const branchId = db.database.branchId;

  await query(fx, db, 'CREATE TABLE kept AS SELECT 42 AS answer');
  await untilState(fx, branchId, 'suspended');
  t.equal(fx.core.local.running.pid(branchId), undefined, 'the postmaster is gone');
  t.same((await query(fx, db, 'SELECT answer FROM kept')).rows, [{ answer: 42 }], 'woken with its data');

  const open = client(fx, db);
  await open.connect();
  await open.query('BEGIN');
  await open.query('INSERT INTO kept VALUES (7)');
  await settle(2500);
  t.equal(fx.core.computes.info(branchId).state, 'running', 'an idle-in-transaction session keeps its compute');
  await open.query('COMMIT');
  t.same((await open.query('SELECT count(*)::int AS n FROM kept')).rows, [{ n: 2 }]);
  await open.end();
  await untilState(fx, branchId, 'suspended');
  t.equal(fx.core.local.running.pid(branchId), undefined, 'suspended once the session ended: the postmaster is gone');
});

t.test('at capacity the least recently used idle compute makes room; all busy → 53300', async (t) => {
  const fx = await startProxyFixture({ PGFLEET_MAX_COMPUTES: '2' });
  t.teardown(() => fx.stop());
  const [a, b, c] = [await fx.createDatabase(), await fx.createDatabase(), await fx.createDatabase()];
  await query(fx, a, 'SELECT 1');
  await query(fx, b, 'SELECT 1');
  await query(fx, c, 'SELECT 1');
  // Eviction does not hold up the new start: A may still be stopping when C answers.
  t.match(fx.core.computes.info(a.database.branchId).state, /^(stopping|suspended)$/, 'A, least recently used, is being suspended');
  await untilState(fx, a.database.branchId, 'suspended');
  t.equal(fx.core.computes.info(b.database.branchId).state, 'running');
  t.equal(fx.core.computes.info(c.database.branchId).state, 'running');

  const holdB = client(fx, b);
  const holdC = client(fx, c);
  await holdB.connect();
  await holdC.connect();
  const err = await connectError(fx, a);
  t.equal(err.code, '53300', 'all busy → 53300');
  t.match(err.message, /compute slots .* busy/);
  await holdB.end();
  t.same((await query(fx, a, 'SELECT 1 AS one')).rows, [{ one: 1 }], 'a freed slot serves the next connection');
  await holdC.end();
});

t.test('kill -9 of a compute: the next connection recovers every committed row', async (t) => {
  const fx = await startProxyFixture();
  t.teardown(() => fx.stop());
  const db = await fx.createDatabase();
  const branchId = db.database.branchId;
  await query(fx, db, 'CREATE TABLE rows AS SELECT g FROM generate_series(1, 1000) g');
  const pid = fx.core.local.running.pid(branchId)!;
  const suspended = untilState(fx, branchId, 'suspended');
  process.kill(pid, 'SIGKILL');
  await suspended;
  t.equal(fx.core.local.running.pid(branchId), undefined, 'the crash is noticed: the provider let go of the dead postmaster');
  t.same((await query(fx, db, 'SELECT count(*)::int AS n FROM rows')).rows, [{ n: 1000 }]);
  t.not(fx.core.local.running.pid(branchId), pid, 'a new postmaster');
});

t.test('a compute that cannot start: every waiting client gets a clear error, no hang, and a retry later', async (t) => {
  const fx = await startProxyFixture({ PGFLEET_WAKE_TIMEOUT: '20' });
  t.teardown(() => fx.stop());
  const db = await fx.createDatabase();
  await query(fx, db, 'SELECT 1');
  await fx.core.computes.suspend(db.database.branchId);
  const route = (await routeByDatabase(fx.core.catalog, db.database.id))!;
  const pgdata = path.join(fx.core.local.dataDirOf(fx.core.targetFor(route).ref), 'pgdata');
  const control = path.join(pgdata, 'global', 'pg_control');
  const saved = fs.readFileSync(control);
  fs.writeFileSync(control, Buffer.alloc(saved.length)); // a broken data directory

  const errors = await Promise.all(Array.from({ length: 5 }, () => connectError(fx, db)));
  t.same(errors.map((e) => e.code), Array(5).fill('57P03'), 'each waiting client gets 57P03');
  t.ok(errors.every((e) => /could not be started/.test(e.message)), errors[0]!.message);

  fs.writeFileSync(control, saved);
  fs.chownSync(control, fs.statSync(pgdata).uid, fs.statSync(pgdata).gid);
  // A client that arrived after the first failure made a second attempt, and two failures back
  // off: the refusal names when the next attempt may come, and then it succeeds.
  let retried = await query(fx, db, 'SELECT 2 AS two').catch((err: Error) => err);
  const backoff = retried instanceof Error ? /next attempt is in (\d+) s/.exec(retried.message) : null;
  if (backoff) {
    await settle(Number(backoff[1]) * 1000 + 100);
    retried = await query(fx, db, 'SELECT 2 AS two');
  }
  t.same((retried as pg.QueryResult).rows, [{ two: 2 }], 'repaired, it starts again');
});
