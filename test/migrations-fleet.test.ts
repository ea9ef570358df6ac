// A migration job on a fleet of two gateway processes: one runs it (a lease), it reaches the
// databases placed on both nodes, and a kill -9 of the gateway running it mid-job leaves each
// database migrated exactly once when the job finishes (taken back where it was).
import pg from 'pg';
import t from 'tap';
import { until } from './helpers.ts';
import { jobIn, owner } from './migration-helpers.ts';
import { ADMIN_KEY, type Fleet, call, startFleet } from './fleet/topology.ts';

const N = 8;
let fleet: Fleet;
t.before(async () => {
  fleet = await startFleet({ gateways: 2, env: { PGFLEET_MIGRATION_LEASE: '2' } });
});
t.teardown(() => fleet?.stop(!t.passing()));

t.test('kill -9 of the gateway running a job: it resumes, and each database has it once', async (t) => {
  const api = fleet.lb.apiUrl;
  const key = (await call(api, 'POST', '/v1/partners', ADMIN_KEY, { name: 'acme' })).body.api_key;
  const dbs: any[] = [];
  for (let i = 0; i < N; i++) dbs.push((await call(fleet.gateways[i % 2]!.apiUrl, 'POST', '/v1/databases', key, { user_id: `u${i}` })).body);
  const catalog = new pg.Client({ connectionString: fleet.catalogUrl });
  await catalog.connect();
  t.teardown(() => catalog.end());
  const { rows: placed } = await catalog.query('SELECT DISTINCT node_id FROM databases WHERE id = ANY($1)', [dbs.map((d) => d.id)]);
  t.equal(placed.length, 2, 'databases on both nodes');

  // Slow enough that the kill lands mid-job; CREATE TABLE would fail if any database got it twice.
  const job = (await call(api, 'POST', '/v1/migrations', key, { name: '001_once', sql: 'CREATE TABLE once (id int); SELECT pg_sleep(0.4)', concurrency: 2 })).body;
  const state = async () => (await catalog.query('SELECT lease_owner FROM migration_jobs WHERE id = $1', [job.id])).rows[0];
  const applied = async () => (await catalog.query(`SELECT count(*)::int AS n FROM migration_targets WHERE job_id = $1 AND state = 'applied'`, [job.id])).rows[0].n;
  await until('two databases migrated', async () => (await applied()) >= 2, 120_000);
  const runner = (await state()).lease_owner;
  t.ok(runner, `run by ${runner}`);
  const gateway = fleet.gateways.find((g) => g.nodeId === runner)!;
  t.ok(gateway, 'one of the two gateways holds the job');
  t.ok((await applied()) < N, 'killed mid-job');
  await gateway.kill9();
  await gateway.restart();
  const get = async (id: string) => (await call(api, 'GET', `/v1/migrations/${id}`, key)).body;
  const done = await jobIn(get, job.id, ['finished', 'failed'], 240_000);
  t.match(done, { state: 'finished', counts: { total: N, applied: N, failed: 0 } }, JSON.stringify(done.failures));
  for (const db of dbs) {
    await owner({ port: fleet.lb.proxyPort, caPath: fleet.caPath }, db, async (c) => {
      t.same((await c.query('SELECT name FROM pgfleet.migrations')).rows, [{ name: '001_once' }], `${db.id}: recorded once`);
      t.equal((await c.query(`SELECT to_regclass('once')::text AS t`)).rows[0].t, 'once');
    });
  }
});
