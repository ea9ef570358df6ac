// Fleet-wide migrations on one gateway, end to end: real computes (running, suspended, never
// started), each database's own record, failures reported per database, and the job's controls.
import t from 'tap';
import { runCli } from '../api/cli.ts';
import { progressLine } from '../api/cli/migrations.ts';
import { type ApiHarness, pooled, startApi } from './api-client.ts';
import { until } from './helpers.ts';
import { jobIn, owner, sqlstateOf } from './migration-helpers.ts';

let api: ApiHarness;
let key: string;
let dbs: any[] = [];
const N = Number(process.env.MIGRATION_TEST_DATABASES ?? 12);

const to = () => ({ port: api.gateway.proxyPort, caPath: api.gateway.caPath! });
const get = async (id: string) => (await api.request('GET', `/v1/migrations/${id}`, { key })).body;
const post = (body: unknown) => api.request('POST', '/v1/migrations', { key, body });
const running = () => api.gateway.core.computes.activeCount;

t.before(async () => {
  api = await startApi();
  key = (await api.partner()).key;
  dbs = await pooled(Array.from({ length: N }, (_, i) => i), 8, async (i) => (await api.request('POST', '/v1/databases', {
    key, body: { user_id: `u${i}`, suspend_timeout_seconds: 0, labels: { tier: i % 3 === 0 ? 'gold' : 'free' } },
  })).body);
  // A third runs, a third ran and was suspended, a third never started.
  // A wake the loaded host makes slower than the wake timeout is asked again.
  await pooled(dbs.slice(0, (2 * N) / 3), 4, async (db) => {
    await until(`${db.id} to run`, async () => (await api.request('POST', `/v1/databases/${db.id}/wake`, { key })).body.state === 'running', 300_000, 500);
  });
  await pooled(dbs.slice(N / 3, (2 * N) / 3), 4, async (db) => api.request('POST', `/v1/databases/${db.id}/suspend`, { key }));
  await until('a third of the computes to run', () => running() === N / 3, 120_000);
});
t.teardown(() => api?.stop());

t.test('bad requests are 400s that name the field', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ name: 'has space', sql: 'SELECT 1' }, /^name:/],
    [{ name: 'm', sql: '   ' }, /^sql:/],
    [{ name: 'm', sql: 'SELECT 1', selector: { ids: ['db-no-such-000000'] } }, /^selector\.ids: no database/],
    [{ name: 'm', sql: 'SELECT 1', selector: { template: 'tpl-none' } }, /^selector\.template: no template/],
    [{ name: 'm', sql: 'SELECT 1', concurrency: 0 }, /concurrency/],
    [{ name: 'm', sql: 'SELECT 1', selector: { colour: 'red' } }, /selector/],
  ];
  for (const [body, message] of cases) {
    const res = await post(body);
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.body.error.code, 'bad_request');
    t.match(res.body.error.message, message);
  }
  t.equal((await api.request('GET', '/v1/migrations/mig-none', { key })).status, 404);
});

t.test('a migration reaches every database once, as its owner; a failing one is reported per database', async (t) => {
  const before = { running: running() };
  let peak = 0;
  const watch = setInterval(() => (peak = Math.max(peak, running())), 20);
  t.teardown(() => clearInterval(watch));
  const created = await post({ name: '001_items', sql: 'CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)', concurrency: 3 });
  t.equal(created.status, 202);
  t.match(created.body, { name: '001_items', state: /pending|running/, counts: { total: N } });
  const job = await jobIn(get, created.body.id, ['finished', 'failed']);
  clearInterval(watch);
  t.match(job, { state: 'finished', counts: { total: N, applied: N, failed: 0, skipped: 0, pending: 0 }, failures: [] });
  t.ok(peak <= before.running + 3, `peak running computes ${peak} ≤ ${before.running} running before + concurrency 3`);
  // Those it woke are suspended again; those that ran still run.
  t.equal(running(), before.running, 'as many computes run as before');

  const report = (await api.request('GET', `/v1/migrations/${job.id}/databases`, { key })).body.databases;
  t.equal(report.length, N);
  t.ok(report.every((r: any) => r.state === 'applied' && Number.isInteger(r.duration_ms)), 'each applied, with its time');
  await owner(to(), dbs[N - 1], async (c) => {
    t.same((await c.query('SELECT name, job_id FROM pgfleet.migrations')).rows, [{ name: '001_items', job_id: job.id }]);
    t.equal((await c.query(`SELECT tableowner FROM pg_tables WHERE tablename = 'items'`)).rows[0].tableowner, dbs[N - 1].role, 'made by the owner role');
    // The record is read-only to the tenant, and only pgfleet's proof records.
    t.equal(await sqlstateOf(c.query(`INSERT INTO pgfleet.migrations (name, job_id) VALUES ('002_fake', 'x')`)), '42501');
    t.equal(await sqlstateOf(c.query(`DELETE FROM pgfleet.migrations`)), '42501');
    t.equal(await sqlstateOf(c.query(`SELECT * FROM pgfleet.migration_key`)), '42501');
    t.equal(await sqlstateOf(c.query(`SELECT pgfleet.record_migration('002_fake', 'x', 1, repeat('0', 64))`)), '42501');
  });

  // Two databases already have the column the next migration adds.
  for (const db of [dbs[0], dbs[N - 1]]) await owner(to(), db, (c) => c.query('ALTER TABLE items ADD COLUMN note text'));
  const second = await jobIn(get, (await post({ name: '002_note', sql: 'ALTER TABLE items ADD COLUMN note text', concurrency: 4 })).body.id, ['finished', 'failed']);
  t.match(second, { state: 'finished', counts: { applied: N - 2, failed: 2 } });
  t.same(second.failures.map((f: any) => f.database_id).sort(), [dbs[0].id, dbs[N - 1].id].sort());
  t.match(second.failures[0], { state: 'failed', sqlstate: '42701', error: /column "note" of relation "items" already exists/ });
  await owner(to(), dbs[0], async (c) => {
    t.same((await c.query('SELECT name FROM pgfleet.migrations ORDER BY name')).rows.map((r) => r.name), ['001_items'], 'a failed migration leaves no record');
  });

  // Posted again: the databases that have it are skipped.
  const again = await jobIn(get, (await post({ name: '001_items', sql: 'CREATE TABLE items (id int PRIMARY KEY)' })).body.id, ['finished']);
  t.match(again.counts, { skipped: N, applied: 0, failed: 0 });
  const skipped = (await api.request('GET', `/v1/migrations/${again.id}/databases?state=skipped&limit=1`, { key })).body.databases;
  t.match(skipped[0].reason, `already applied (by ${job.id})`);

  const { rows } = await api.gateway.core.catalog.query(`SELECT type, data FROM events WHERE type LIKE 'migration.%' ORDER BY seq`);
  t.same(rows.map((r) => r.type), ['migration.finished', 'migration.finished', 'migration.finished']);
  t.match(rows[1].data, { migration_id: second.id, applied: N - 2, failed: 2 });
});

t.test('a selector by labels; a dry run changes nothing; a migration can do nothing the owner could not', async (t) => {
  const gold = dbs.filter((_, i) => i % 3 === 0);
  const dry = await jobIn(get, (await post({ name: '003_dry', sql: 'CREATE TABLE dry (id int)', dry_run: true, selector: { labels: { tier: 'gold' } } })).body.id, ['finished']);
  t.match(dry.counts, { total: gold.length, applied: gold.length });
  await owner(to(), gold[0], async (c) => {
    t.equal((await c.query(`SELECT to_regclass('dry') AS t`)).rows[0].t, null, 'rolled back');
    t.equal((await c.query(`SELECT count(*)::int AS n FROM pgfleet.migrations WHERE name = '003_dry'`)).rows[0].n, 0, 'not recorded');
  });
  const escalate = await jobIn(get, (await post({ name: '004_super', sql: 'ALTER ROLE CURRENT_USER SUPERUSER', selector: { ids: [gold[0].id] } })).body.id, ['finished']);
  t.match(escalate.failures[0], { sqlstate: '42501' });
  const commit = await jobIn(get, (await post({ name: '005_commit', sql: 'COMMIT; CREATE TABLE outside (id int)', selector: { ids: [gold[0].id] } })).body.id, ['finished']);
  t.match(commit.failures[0], { error: /ended the transaction/ });
});

t.test('pause, resume, cancel, and a stop after max_failures', async (t) => {
  const ids = dbs.slice(0, N / 3).map((d) => d.id); // running ones: no wake in the way
  const slow = { sql: 'SELECT pg_sleep(0.3)', concurrency: 1, selector: { ids } };
  const job = (await post({ name: '006_slow', ...slow })).body;
  t.match((await api.request('POST', `/v1/migrations/${job.id}/pause`, { key })).body, { state: 'paused' });
  await new Promise((r) => setTimeout(r, 800)); // the database under way finishes
  const paused = await get(job.id);
  await new Promise((r) => setTimeout(r, 800));
  t.same((await get(job.id)).counts, paused.counts, 'nothing moves while paused');
  t.ok(paused.counts.pending > 0, `${paused.counts.pending} still pending`);
  t.equal((await api.request('POST', `/v1/migrations/${job.id}/cancel`, { key: 'nope' })).status, 401);
  t.match((await api.request('POST', `/v1/migrations/${job.id}/resume`, { key })).body, { state: 'running' });
  t.match(await jobIn(get, job.id, ['finished']), { counts: { applied: ids.length, pending: 0 } });
  t.equal((await api.request('POST', `/v1/migrations/${job.id}/pause`, { key })).status, 409, 'an ended job cannot pause');

  const cancelled = (await post({ name: '007_slow', ...slow })).body;
  t.match((await api.request('POST', `/v1/migrations/${cancelled.id}/cancel`, { key })).body, { state: 'cancelled', counts: { pending: 0 } });
  const after = await get(cancelled.id);
  t.ok(after.counts.skipped >= ids.length - 1, 'the databases not reached are skipped');

  const failing = await jobIn(get, (await post({ name: '008_fail', sql: 'SELECT 1/0', concurrency: 1, max_failures: 2 })).body.id, ['failed']);
  t.match(failing, { state: 'failed', state_detail: /stopped after 2 failed databases/, counts: { failed: 2, pending: N - 2 } });
  t.match(failing.failures[0], { sqlstate: '22012', error: 'division by zero' });
  const { rows } = await api.gateway.core.catalog.query(`SELECT type FROM events WHERE type IN ('migration.paused', 'migration.cancelled', 'migration.failed') ORDER BY seq`);
  t.same(rows.map((r) => r.type), ['migration.paused', 'migration.cancelled', 'migration.failed']);
});

t.test('labels are set on create and replaced by PATCH; bad ones are 400s', async (t) => {
  const db = dbs[1];
  t.same((await api.request('GET', `/v1/databases/${db.id}`, { key })).body.labels, { tier: 'free' });
  const patched = await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { labels: { tier: 'gold', app: 'shop' } } });
  t.same(patched.body.labels, { tier: 'gold', app: 'shop' });
  const bad = await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { labels: { 'bad key': 'x' } } });
  t.equal(bad.status, 400);
  t.equal(bad.body.error.code, 'bad_request');
});

t.test('the CLI follows a job with a progress bar', async (t) => {
  const lines: string[] = [];
  const cli = (args: string[]) => runCli([...args, '--url', api.url, '--key', key], (l) => lines.push(l));
  const ids = dbs.slice(0, 2).map((d) => d.id).join(',');
  t.equal(await cli(['migrations', 'create', '--name', '009_cli', '--sql', 'CREATE TABLE cli (id int)', '--ids', ids, '--concurrency', '2', '--wait']), 0);
  t.match(lines.at(-1), /^\[#{30}\] 2\/2 applied 2, failed 0, skipped 0 \(finished\)$/);
  lines.length = 0;
  t.equal(await cli(['migrations', 'list']), 0);
  t.match(lines[0], /^mig-[0-9a-f]+\t009_cli\tfinished\t2\/2 applied/);
  t.equal(progressLine({ state: 'running', counts: { total: 4, applied: 1, failed: 0, skipped: 1 } }), `[${'#'.repeat(15)}${'.'.repeat(15)}] 2/4 applied 1, failed 0, skipped 1 (running)`);
});
