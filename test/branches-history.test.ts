// History windows and their errors, retention pruning on disk, and a restore that leaves other databases alone.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { initCluster } from '../src/pg/server.ts';
import { startApi } from './api-client.ts';
import { connect, query } from './endpoint-client.ts';
import { until } from './helpers.ts';

const execFileAsync = promisify(execFile);



t.test('a bad `at` is a 400 that says which and gives the earliest restorable time; retention prunes the disk', async (t) => {
  // Every stop makes a base backup (interval 1 s), so history accumulates quickly.
  const api = await startApi({ PGFLEET_BASE_BACKUP_INTERVAL: '1' });
  t.teardown(() => api.stop());
  const { key } = await api.partner('acme');
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'alice', suspend_timeout_seconds: 0 } })).body;
  t.equal(db.history_retention_seconds, 7 * 86400, 'the default retention is 7 days');
  const q = (sql: string) => query(api, db, db.password, sql);
  const restore = (at: string) => api.request('POST', `/v1/databases/${db.id}/restore`, { key, body: { at } });

  await q('CREATE TABLE items (id int)');
  for (const bad of ['yesterday', '2025-13-40T00:00:00Z', '12345', '0/XYZ']) {
    const res = await restore(bad);
    t.equal(res.status, 400, `"${bad}" → 400`);
    t.match(res.body.error.message, /^at: malformed/);
  }
  const future = await restore(new Date(Date.now() + 3_600_000).toISOString());
  t.equal(future.status, 400);
  t.match(future.body.error.message, /is in the future; the earliest restorable time is \d{4}-/);
  const beforeCreation = await restore(new Date(Date.parse(db.created_at) - 60_000).toISOString());
  t.equal(beforeCreation.status, 400);
  t.match(beforeCreation.body.error.message, /before the database existed .*the earliest restorable time is/);

  // Three stops, three base backups beside the template one.
  for (let i = 1; i <= 3; i++) {
    await q(`INSERT INTO items VALUES (${i})`);
    await new Promise((r) => setTimeout(r, 1100));
    t.equal((await api.request('POST', `/v1/databases/${db.id}/suspend`, { key })).status, 200);
  }
  const core = api.gateway.core;
  const main = (await core.catalog.query('SELECT id FROM branches WHERE database_id = $1', [db.id])).rows[0].id;
  const branchDir = core.local.layout.branchDir('local', db.id, main);
  const backupsOnDisk = () => fs.readdirSync(path.join(branchDir, 'backups')).filter((f) => !f.endsWith('.tmp'));
  const segments = () => fs.readdirSync(path.join(branchDir, 'archive')).filter((f) => /^[0-9A-F]{24}$/.test(f));
  t.equal(backupsOnDisk().length, 3, 'a base backup at each stop');
  const segmentsBefore = segments();
  const rows = await core.catalog.query('SELECT kind FROM base_backups b JOIN branches br ON br.id = b.branch_id WHERE br.database_id = $1 ORDER BY end_time', [db.id]);
  t.same(rows.rows.map((r) => r.kind), ['template', 'copy', 'copy', 'copy']);

  // A window of 2 s: everything but the newest backup falls out of it.
  t.equal((await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { history_retention_seconds: 2 } })).body.history_retention_seconds, 2);
  await new Promise((r) => setTimeout(r, 2100));
  await core.branches.upkeep();
  t.equal(backupsOnDisk().length, 1, 'base backups older than the window are removed from disk');
  t.ok(segments().length < segmentsBefore.length, `archived WAL before the kept backup is removed (${segmentsBefore.length} → ${segments().length})`);
  const old = await restore(new Date(Date.parse(db.created_at) + 100).toISOString());
  t.equal(old.status, 400);
  t.match(old.body.error.message, /outside the history retention window; the earliest restorable time is \d{4}-/);

  // 0 = no history: nothing to restore to, and the disk keeps none.
  await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { history_retention_seconds: 0 } });
  await core.branches.upkeep();
  t.equal(backupsOnDisk().length, 0, 'no base backups with no history');
  const none = await restore(new Date(Date.now() - 1000).toISOString());
  t.match(none.body.error.message, /keeps no history/);
  const branch = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'now' } });
  t.equal(branch.status, 201, 'a branch of now needs no history');
  t.same((await query(api, branch.body, db.password, 'SELECT count(*)::int AS n FROM items'))[0].n, 3);

  // The partner default applies where the database sets none.
  const admin = 'test-admin-key-0123456789';
  const partners = (await api.request('GET', '/v1/partners', { key: admin })).body.partners;
  t.equal((await api.request('PATCH', `/v1/partners/${partners[0].id}`, { key: admin, body: { default_history_retention_seconds: 3600 } })).status, 200);
  const db2 = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'bob' } })).body;
  t.equal(db2.history_retention_seconds, 3600, 'the partner default');
  t.equal((await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { history_retention_seconds: null } })).body.history_retention_seconds, 3600);
});

t.test("while database A is restored, database B's clients keep querying; A's new connections wait for it", async (t) => {
  const api = await startApi();
  t.teardown(() => api.stop());
  const { key } = await api.partner('acme');
  const create = async (user: string) => (await api.request('POST', '/v1/databases', { key, body: { user_id: user, suspend_timeout_seconds: 0 } })).body;
  const a = await create('a');
  const b = await create('b');
  await query(api, a, a.password, 'CREATE TABLE items (id int); INSERT INTO items VALUES (1)');
  const [{ t: at }] = await query(api, a, a.password, 'SELECT clock_timestamp() AS t');
  await query(api, a, a.password, 'INSERT INTO items VALUES (2)');

  const clientB = connect(api, b, b.password);
  await clientB.connect();
  const bPid = (await clientB.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  let stop = false;
  let queries = 0;
  const loop = (async () => {
    while (!stop) {
      await clientB.query('SELECT count(*) FROM pg_class');
      queries++;
    }
  })();

  const restoring = api.request('POST', `/v1/databases/${a.id}/restore`, { key, body: { at: at.toISOString() } });
  const databaseDir = api.gateway.core.local.layout.databaseDir('local', a.id);
  await until('the restore to stage its copy', () => fs.readdirSync(databaseDir).some((f) => f.endsWith('.staging')));
  // A connection made while A is restored waits like a wake, and sees the restored data.
  const during = query(api, a, a.password, 'SELECT array_agg(id ORDER BY id) AS ids FROM items');
  const res = await restoring;
  t.equal(res.status, 200, JSON.stringify(res.body));
  t.same((await during)[0].ids, [1], 'a connection during the restore waited and sees the restored rows');
  const before = queries;
  await until('more queries on B', () => queries > before + 5);
  stop = true;
  await loop;
  t.ok(queries > 0, `database B answered ${queries} queries without an error meanwhile`);
  t.equal((await clientB.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, bPid, "B's session was never cut");
  await clientB.end();
});

t.test('after the binaries change version, a point in time before the first base backup still replays onto the template it began from', async (t) => {
  const api = await startApi();
  t.teardown(() => api.stop());
  const { key } = await api.partner('acme');
  const core = api.gateway.core;
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'alice', suspend_timeout_seconds: 0 } })).body;
  await query(api, db, db.password, 'CREATE TABLE items (id int); INSERT INTO items VALUES (1)');
  const [{ t: at }] = await query(api, db, db.password, 'SELECT clock_timestamp() AS t');
  await query(api, db, db.password, 'INSERT INTO items VALUES (2)');
  const backups = await core.catalog.query('SELECT b.id FROM base_backups b JOIN branches br ON br.id = b.branch_id WHERE br.database_id = $1', [db.id]);
  t.same(backups.rows.map((r) => r.id), [`template-${db.postgres_version}`], 'the only base backup names the template and its version');

  // An upgrade of the binaries, as the disk sees it: the template of the old version stays under
  // its name, and the current version has a template of its own (another cluster).
  const current = core.local.templatePgdata(db.pg_version);
  const old = core.local.layout.templateDir('0.0-earlier');
  await execFileAsync('cp', ['-a', path.dirname(current), old]);
  await core.catalog.query(`UPDATE base_backups SET id = 'template-0.0-earlier' WHERE id = $1`, [backups.rows[0].id]);
  fs.rmSync(current, { recursive: true, force: true });
  await initCluster(core.local.opts.installs.get(db.pg_version), core.local.opts.user, current);

  const branch = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'at-t', at: at.toISOString() } });
  t.equal(branch.status, 201, JSON.stringify(branch.body));
  t.same((await query(api, branch.body, db.password, 'SELECT array_agg(id) AS ids FROM items'))[0].ids, [1], 'the rows at T, replayed onto the template the history began from');

  fs.rmSync(old, { recursive: true, force: true });
  const gone = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'at-t-again', at: at.toISOString() } });
  t.equal(gone.status, 500, 'that template gone: the branch fails');
  t.equal((await api.request('GET', `/v1/databases/${db.id}/branches/at-t-again`, { key })).status, 404, 'and leaves nothing behind');
});
