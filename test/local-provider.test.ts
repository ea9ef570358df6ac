import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { branchRefOf, routeByDatabase } from '../src/catalog/routes.ts';
import type { BranchRef, ComputeAddress } from '../src/providers/provider.ts';
import { postmastersUnder, uidOf } from './helpers.ts';
import { startProxyFixture } from './proxy-helpers.ts';

const fx = await startProxyFixture();
t.teardown(() => fx.stop());
const provider = fx.core.local;
const user = fx.core.user;

/** A new database's main branch, as the provider is given it. */
async function testRef(): Promise<BranchRef> {
  const db = await fx.createDatabase();
  return branchRefOf((await routeByDatabase(fx.core.catalog, db.database.id))!);
}

function clientFor(address: ComputeAddress, user: string, database: string): pg.Client {
  if (address.kind !== 'unix') throw new Error('expected a unix socket');
  return new pg.Client({ host: path.dirname(address.socketPath), port: 5432, user, database });
}

t.test('lifecycle: create, start, query, stop, start again, delete', async (t) => {
  const ref = await testRef();
  await provider.create();
  const branchDir = provider.dataDirOf(ref);
  t.notOk(fs.existsSync(path.join(branchDir, 'pgdata')), 'create materializes nothing');

  const address = await provider.start(ref);
  t.equal(provider.status(ref), 'running');
  t.ok(fs.existsSync(path.join(branchDir, 'pgdata', 'PG_VERSION')), 'first start materialized the data dir');
  let c = clientFor(address, ref.ownerRole, ref.databaseName);
  await c.connect();
  await c.query('CREATE TABLE notes (id int primary key, body text)');
  await c.query(`INSERT INTO notes VALUES (1, 'kept across restarts')`);
  const who = await c.query(`SELECT current_user, current_database(),
      (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
      pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') AS read_files,
      pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') AS run_programs,
      (SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()) AS owner`);
  t.same(who.rows[0], { current_user: ref.ownerRole, current_database: 'app', superuser: false, read_files: false, run_programs: false, owner: ref.ownerRole });
  await t.rejects(c.query(`COPY notes FROM PROGRAM 'id'`), /permission denied|must be superuser|privilege/i, 'cannot run programs');
  await t.rejects(c.query(`SELECT pg_read_file('postgresql.conf')`), /permission denied/, 'cannot read server files');
  await c.end();

  await provider.stop(ref);
  t.equal(provider.status(ref), 'stopped');
  t.same(postmastersUnder(branchDir), [], 'stop leaves no postmaster');
  await t.rejects(provider.start({ ...ref, pgVersion: 16 }), { name: 'ComputeStartError', message: `the data of database "${ref.databaseId}" is of Postgres 17, but the catalog says 16` },
    'data of another major is never started with the wrong binaries');
  await t.rejects(provider.start({ ...ref, pgVersion: 14 }), { name: 'ComputeStartError', message: /runs Postgres 14, which is not installed on this host \(installed: 15, 16, 17, 18\)/ });

  const again = await provider.start(ref);
  c = clientFor(again, ref.ownerRole, ref.databaseName);
  await c.connect();
  t.same((await c.query('SELECT body FROM notes')).rows, [{ body: 'kept across restarts' }]);
  await c.end();

  await provider.delete(ref);
  t.notOk(fs.existsSync(branchDir), 'delete removes every file of the branch');
  t.notOk(fs.existsSync(path.dirname(branchDir)), 'and the emptied database dir');
  t.same(postmastersUnder(branchDir), []);
});

t.test('as root, each database\'s postmaster runs as an unprivileged OS user of its own', { skip: process.getuid?.() !== 0 && 'not root' }, async (t) => {
  const [a, b] = [await testRef(), await testRef()];
  await provider.start(a);
  await provider.start(b);
  const [uidA, uidB] = [uidOf(provider.running.pid(a.branchId)!), uidOf(provider.running.pid(b.branchId)!)];
  t.not(uidA, 0);
  t.not(uidB, 0);
  t.not(uidA, uidB, 'two databases, two OS users');
  t.not(uidA, user.uid, 'not the shared compute user');
  t.equal(fs.statSync(path.join(provider.dataDirOf(a), 'pgdata')).uid, uidA, 'data files are owned by it');
  const dbDir = path.dirname(provider.dataDirOf(a));
  t.equal(fs.statSync(dbDir).mode & 0o777, 0o700, 'and only it can enter the database directory');
  await provider.delete(a);
  await provider.delete(b);
});

t.test('kill -9 mid-insert: the next start recovers every committed row', async (t) => {
  const ref = await testRef();
  const address = await provider.start(ref);
  const c = clientFor(address, ref.ownerRole, ref.databaseName);
  c.on('error', () => {});
  await c.connect();
  await c.query('CREATE TABLE events (n int)');
  let committed = 0;
  const writer = (async () => {
    for (let i = 1; ; i++) {
      await c.query('INSERT INTO events VALUES ($1)', [i]);
      committed = i;
    }
  })().catch(() => {});
  while (committed < 200) await new Promise((r) => setTimeout(r, 5));
  const pid = provider.running.pid(ref.branchId)!;
  process.kill(pid, 'SIGKILL');
  await writer;
  // The provider notices the death by itself.
  while (provider.status(ref) !== 'stopped') await new Promise((r) => setTimeout(r, 10));
  t.equal(provider.status(ref), 'stopped', 'the death is noticed');
  // Backends outlive a SIGKILLed postmaster for a moment; the stale pid file must not block.
  const again = await provider.start(ref);
  const d = clientFor(again, ref.ownerRole, ref.databaseName);
  await d.connect();
  const { rows } = await d.query('SELECT count(*)::int AS n, max(n) AS top FROM events');
  await d.end();
  t.ok(rows[0].n >= committed, `all ${committed} committed rows are back (found ${rows[0].n})`);
  t.equal(rows[0].n, rows[0].top, 'no gaps');
  await provider.delete(ref);
});

t.test('a role added later exists after the next start', async (t) => {
  const ref = await testRef();
  await provider.start(ref);
  await provider.stop(ref);
  await provider.syncRoles({ ...ref, roles: [ref.ownerRole, 'reader'] });
  const address = await provider.start(ref);
  const c = clientFor(address, 'reader', ref.databaseName);
  await c.connect();
  t.same((await c.query('SELECT current_user')).rows, [{ current_user: 'reader' }]);
  await c.end();
  await provider.delete(ref);
});
