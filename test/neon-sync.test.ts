// pgfleet and Neon agree, whatever fails: settings reach Neon before the catalog changes, a create
// whose answer is lost adopts the project rather than making a second, deletions are retried until
// done, and reconciliation finds orphans and projects deleted behind pgfleet's back.
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import t from 'tap';
import { runCli } from '../api/cli.ts';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { FakeNeon } from './fake-neon/fake-neon.ts';
import { neonRegionEnv } from './fake-neon/pgfleet-side.ts';
import { psql, psqlError } from './proxy-helpers.ts';

const fake = await FakeNeon.start();
t.teardown(() => fake.close());
const api = await startApi({
  ...neonRegionEnv(fake),
  PGFLEET_NEON_REQUEST_TIMEOUT: '3',
  PGFLEET_NEON_ORPHAN_GRACE: '2',
  PGFLEET_NEON_RECONCILE_INTERVAL: '0',
});
t.teardown(() => api.stop());
const core = api.gateway.core;
const acme = await api.partner('acme');
const REGION = 'aws-us-east-2';

const create = async (body: Record<string, unknown> = {}) => {
  const r = await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice', region: REGION, ...body } });
  if (r.status !== 201) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};
const projectOf = (databaseId: string) => [...fake.projects.values()].filter((p) => p.name === databaseId);
const waitFor = async (what: string, check: () => Promise<boolean> | boolean) => {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
};
const metrics = async () => {
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const value = (name: string) => {
    const family = parsePrometheusTextFormat(text).find((f: { name: string }) => f.name === name);
    return family ? family.metrics.reduce((sum: number, m: any) => sum + Number(m.value), 0) : undefined;
  };
  return value;
};

t.test('a PATCH of suspend timeout and quotas reaches Neon; a refusal changes nothing', async (t) => {
  const db = await create({ quotas: { compute_time_seconds: 3600 } });
  const [project] = projectOf(db.id);
  const patched = await api.request('PATCH', `/v1/databases/${db.id}`, {
    key: acme.key, body: { suspend_timeout_seconds: 0, quotas: { storage_bytes: 5_000_000, compute_time_seconds: null } },
  });
  t.equal(patched.status, 200);
  t.equal(fake.mainEndpoint(project!).suspendTimeoutSeconds, -1, "the endpoint's suspend timeout changed at Neon (0 = never = -1)");
  t.equal(project!.defaultSuspendTimeoutSeconds, -1, "and the project's default");
  t.same(project!.quota, { compute_time_seconds: 0, data_transfer_bytes: 0, written_data_bytes: 0, logical_size_bytes: 5_000_000 },
    'quotas replaced at Neon: a lifted quota is 0 (unlimited) there');

  fake.failNext('updateProject', 400, 1);
  const refused = await api.request('PATCH', `/v1/databases/${db.id}`, { key: acme.key, body: { suspend_timeout_seconds: 60, quotas: { storage_bytes: 1 } } });
  t.equal(refused.status, 422, 'a Neon refusal is a 4xx');
  t.equal(refused.body.error.code, 'neon_refused');
  t.match(refused.body.error.message, /Neon API updateProject failed: HTTP 400: injected failure/, "Neon's reason is named");
  const after = await api.request('GET', `/v1/databases/${db.id}`, { key: acme.key });
  t.equal(after.body.suspend_timeout_seconds, 0, 'the catalog kept the accepted suspend timeout');
  t.equal(after.body.quotas.storage_bytes, 5_000_000, 'and the accepted quotas');
  t.equal(project!.quota.logical_size_bytes, 5_000_000, 'Neon too');

  fake.failNext('updateProjectEndpoint', 503, 10);
  const failed = await api.request('PATCH', `/v1/databases/${db.id}`, { key: acme.key, body: { suspend_timeout_seconds: 120 } });
  fake.clearFaults();
  t.equal(failed.status, 502, 'Neon failing for good is a 502');
  t.match(failed.body.error.message, /updateProjectEndpoint failed after \d+ attempts: HTTP 503/);
  t.equal((await api.request('GET', `/v1/databases/${db.id}`, { key: acme.key })).body.suspend_timeout_seconds, 0, 'the catalog is unchanged');

  t.equal((await api.request('PATCH', `/v1/databases/${db.id}`, { key: acme.key, body: { name: 'renamed' } })).status, 200, 'a rename alone needs no Neon call');
});

t.test('a create whose answer is lost (5xx, timeout) adopts the project Neon made: never two', async (t) => {
  for (const lost of [502, 'timeout'] as const) {
    const before = fake.projects.size;
    fake.loseAnswer('createProject', 1, lost);
    const db = await create();
    t.equal(fake.projects.size, before + 1, `${lost}: one new project`);
    const [project, second] = projectOf(db.id);
    t.ok(project && !second, `${lost}: exactly one project is named after the database`);
    const conninfo = `host=${db.host} hostaddr=127.0.0.1 port=${api.gateway.proxyPort} user=${db.role} dbname=${db.database} password=${db.password} sslmode=require`;
    t.equal(await psql(conninfo, 'SELECT current_user'), db.role, `${lost}: the adopted project serves the database (its password revealed by Neon)`);
  }
});

t.test('a failed Neon delete is owed, visible, and retried until done', async (t) => {
  const db = await create();
  const [project] = projectOf(db.id);
  fake.failNext('deleteProject', 500, 1000);
  t.equal((await api.request('DELETE', `/v1/databases/${db.id}`, { key: acme.key })).status, 204, 'the database is gone for the partner');
  t.ok(fake.projects.has(project!.id), 'the project is still at Neon');
  const [owed] = await core.deletions.pending();
  t.match(owed, { databaseId: db.id, region: REGION, attempts: 1, lastError: /deleteProject failed after \d+ attempts: HTTP 500/ });
  t.equal((await metrics())('pgfleet_provider_deletions_pending'), 1, 'counted in metrics');
  t.ok(((await metrics())('pgfleet_provider_deletion_failures_total') ?? 0) >= 1);
  fake.clearFaults();
  await waitFor('the background retry', async () => (await core.deletions.pending()).length === 0);
  t.notOk(fake.projects.has(project!.id), 'the retry deleted the project');
});

t.test("deleting a partner removes every one of its databases' projects", async (t) => {
  const other = await api.partner('other');
  const ids: string[] = [];
  for (const user of ['u1', 'u2']) {
    const r = await api.request('POST', '/v1/databases', { key: other.key, body: { user_id: user, region: REGION } });
    ids.push(r.body.id);
  }
  t.equal(ids.flatMap(projectOf).length, 2);
  t.equal((await api.request('DELETE', `/v1/partners/${other.id}`, { key: ADMIN_KEY })).status, 204);
  t.equal(ids.flatMap(projectOf).length, 0, 'no project of the partner is left at Neon');
});

t.test('reconciliation: a project deleted behind pgfleet\'s back fails its database; orphans are reported, then deleted', async (t) => {
  const gone = await create();
  const kept = await create();
  await fake.dropProject(projectOf(gone.id)[0]!.id);
  // A database the catalog forgot (a catalog restored from an older backup): its project is an orphan.
  const forgotten = await create();
  const orphan = projectOf(forgotten.id)[0]!;
  await core.catalog.query('DELETE FROM databases WHERE id = $1', [forgotten.id]);

  const first = await api.request('POST', '/v1/neon/reconcile', { key: ADMIN_KEY });
  t.equal(first.status, 200);
  const region = first.body.regions.find((r: { region: string }) => r.region === REGION);
  t.same(region.missing.map((m: { database_id: string }) => m.database_id), [gone.id], 'the database whose project is gone');
  t.match(region.missing[0].detail, /its Neon project \S+ no longer exists/);
  t.match(region.orphans, [{ resource_id: orphan.id, database_id: forgotten.id, deleted: false }], 'the orphan is reported, kept for its grace period');
  t.ok(fake.projects.has(orphan.id));

  const view = await api.request('GET', `/v1/databases/${gone.id}`, { key: acme.key });
  t.equal(view.body.state, 'failed', 'the API shows the database failed');
  t.match(view.body.error, /no longer exists/);
  const conninfo = (db: any) => `host=${db.host} hostaddr=127.0.0.1 port=${api.gateway.proxyPort} user=${db.role} dbname=${db.database} password=${db.password} sslmode=require`;
  t.match(await psqlError(conninfo(gone)), /is unavailable: its Neon project \S+ no longer exists/, 'a connection gets a clear error');
  t.equal((await api.request('POST', `/v1/databases/${gone.id}/wake`, { key: acme.key })).status, 409, 'a wake is refused');
  t.equal(await psql(conninfo(kept), 'SELECT 1'), '1', 'the other database is served');

  await waitFor('the orphan to be deleted after its grace period', async () => {
    const r = await api.request('POST', '/v1/neon/reconcile', { key: ADMIN_KEY });
    return r.body.regions.some((g: { orphans: { deleted: boolean }[] }) => g.orphans.some((o) => o.deleted));
  });
  t.notOk(fake.projects.has(orphan.id), 'the orphaned project was deleted');
  t.ok(fake.projects.has(projectOf(kept.id)[0]!.id), 'known projects are left alone');

  const value = await metrics();
  t.equal(value('pgfleet_provider_orphans_deleted_total'), 1);
  t.equal(value('pgfleet_provider_missing_total'), 1);
  t.equal(value('pgfleet_databases_failed'), 1);

  const lines: string[] = [];
  const code = await runCli(['neon', 'reconcile', '--url', api.url, '--key', ADMIN_KEY], (l) => lines.push(l));
  t.equal(code, 3, 'the command exits non-zero while a database is failed');
  t.match(lines.join('\n'), new RegExp(`failed database ${gone.id} \\(${REGION}\\): its Neon project`));
  t.equal((await api.request('POST', '/v1/neon/reconcile', { key: acme.key })).status, 403, 'operator only');

  t.equal((await api.request('DELETE', `/v1/databases/${gone.id}`, { key: acme.key })).status, 204, 'a failed database can be deleted');
  t.same(await core.deletions.pending(), [], 'its missing project counts as deleted');
});

t.test("every request and answer followed Neon's OpenAPI document", async (t) => {
  t.same(fake.violations, []);
});
