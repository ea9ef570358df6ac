// History windows and their errors, retention pruning on disk, and a restore that leaves other databases alone.
import fs from 'node:fs';
import t from 'tap';
import { listAll } from '../src/storage/object-store.ts';
import { startApi } from './api-client.ts';
import { connect, query } from './endpoint-client.ts';
import { until } from './helpers.ts';




t.test('a bad `at` is a 400 that says which and gives the earliest restorable time; retention prunes the store', async (t) => {
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
  const store = core.local.opts.storage.store.store;
  const objects = async (under: string) => (await listAll(store, `db/${db.id}/${under}`)).length;
  const backupsInStore = () => objects('backups/');
  const segments = () => objects('wal/');
  t.equal(await backupsInStore(), 3, 'a base backup in the store at each stop');
  const segmentsBefore = await segments();
  const rows = await core.catalog.query(
    'SELECT kind FROM base_backups b JOIN branches br ON br.history_id = b.history_id WHERE br.database_id = $1 ORDER BY end_time', [db.id]);
  t.same(rows.rows.map((r) => r.kind), ['template', 'copy', 'copy', 'copy']);

  // A window of 2 s: everything but the newest backup falls out of it.
  t.equal((await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { history_retention_seconds: 2 } })).body.history_retention_seconds, 2);
  await new Promise((r) => setTimeout(r, 2100));
  await core.branches.upkeep();
  t.equal(await backupsInStore(), 1, 'base backups older than the window are removed from the store');
  const segmentsAfter = await segments();
  t.ok(segmentsAfter < segmentsBefore, `stored WAL before the kept backup is removed (${segmentsBefore} → ${segmentsAfter} objects)`);
  const old = await restore(new Date(Date.parse(db.created_at) + 100).toISOString());
  t.equal(old.status, 400);
  t.match(old.body.error.message, /outside the history retention window; the earliest restorable time is \d{4}-/);

  // 0 = no history: nothing to restore to, and the disk keeps none.
  await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { history_retention_seconds: 0 } });
  await core.branches.upkeep();
  t.equal(await backupsInStore(), 1, 'no history: only the base backup of the current state stays');
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

t.test('after the binaries change version, a point in time before the first base backup replays onto the template it began from, fetched from the store', async (t) => {
  const api = await startApi();
  t.teardown(() => api.stop());
  const { key } = await api.partner('acme');
  const core = api.gateway.core;
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'alice', suspend_timeout_seconds: 0 } })).body;
  await query(api, db, db.password, 'CREATE TABLE items (id int); INSERT INTO items VALUES (1)');
  const [{ t: at }] = await query(api, db, db.password, 'SELECT clock_timestamp() AS t');
  await query(api, db, db.password, 'INSERT INTO items VALUES (2)');
  const backups = await core.catalog.query(
    'SELECT b.id, b.manifest FROM base_backups b JOIN branches br ON br.history_id = b.history_id WHERE br.database_id = $1', [db.id]);
  t.same(backups.rows.map((r) => r.id), [`template-${db.postgres_version}`], 'the only base backup names the template and its version');

  // An upgrade of the binaries, as this node sees it: the template its history began from is of a
  // version this node has no local copy of (another node made it, or the binaries changed since).
  await core.catalog.query(`UPDATE base_backups SET id = 'template-0.0-earlier' WHERE id = $1`, [backups.rows[0].id]);
  const branch = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'at-t', at: at.toISOString() } });
  t.equal(branch.status, 201, JSON.stringify(branch.body));
  t.same((await query(api, branch.body, db.password, 'SELECT array_agg(id) AS ids FROM items'))[0].ids, [1], 'the rows at T, replayed onto the template the history began from, read from the store');

  const store = core.local.opts.storage.store.store;
  await store.delete([backups.rows[0].manifest]);
  const gone = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'at-t-again', at: at.toISOString() } });
  t.equal(gone.status, 500, 'that template gone from the store too: the branch fails');
  t.match(gone.body.error.message, /missing from the store/, gone.body.error.message);
  t.equal((await api.request('GET', `/v1/databases/${db.id}/branches/at-t-again`, { key })).status, 404, 'and leaves nothing behind');
});
