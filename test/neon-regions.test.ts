import t from 'tap';
import { routeByDatabase } from '../src/catalog/routes.ts';
import { BadRequestError } from '../src/errors.ts';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { importProviderUsage } from '../src/provider-usage.ts';
import type { ComputeAddress } from '../src/providers/provider.ts';
import { FakeNeon } from './fake-neon/fake-neon.ts';
import { neonRegionEnv, queryCompute } from './fake-neon/pgfleet-side.ts';
import { testConfig } from './helpers.ts';

const fake = await FakeNeon.start();
t.teardown(() => fake.close());
const config = testConfig(neonRegionEnv(fake));
const core = await startCore(config, createLogger('silent'));
t.teardown(() => core.stop());
await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('acme', 'Acme')`);

const query = (address: ComputeAddress, role: string, sql: string) => queryCompute(address, role, 'app', sql);

t.test('the region picks the provider; local stays the default; an unknown region is a 400', async (t) => {
  t.same(core.regions.ids, ['local', 'aws-us-east-2']);
  const local = await core.databases.create({ partnerId: 'acme', userId: 'u1' });
  t.equal(local.database.provider, 'local');
  t.equal(fake.projects.size, 0, 'no Neon project for a local database');
  const err = await core.databases.create({ partnerId: 'acme', userId: 'u1', region: 'mars-1' }).then(() => undefined, (e: Error) => e);
  t.type(err, BadRequestError);
  t.equal((err as BadRequestError).httpStatus, 400);
  t.match(err?.message, /unknown region "mars-1"; known regions: local, aws-us-east-2/);
  await core.databases.delete('acme', local.database.id);
});

t.test('a database in a neon region: create, wake, roles, password reset, suspend, usage, delete', async (t) => {
  const { database } = await core.databases.create({ partnerId: 'acme', userId: 'u2', region: 'aws-us-east-2', quotas: { written_data_bytes: 1000000 } });
  t.equal(database.provider, 'neon');
  t.equal(fake.projects.size, 1, 'one Neon project per database');
  const project = [...fake.projects.values()][0]!;
  t.equal(project.name, database.id, 'named after the database');
  const endpoint = fake.mainEndpoint(project);
  const main = fake.mainBranch(project);
  t.same(project.quota, { written_data_bytes: 1000000, compute_time_seconds: 0, data_transfer_bytes: 0, logical_size_bytes: 0 }, 'quotas at Neon (0 = unlimited)');
  t.equal(endpoint.suspendTimeoutSeconds, config.defaultSuspendTimeoutSeconds);
  const stateRow = async () => (await core.catalog.query('SELECT provider_state FROM databases WHERE id = $1', [database.id])).rows[0].provider_state;
  t.match(await stateRow(), { neon: { projectId: project.id, endpointId: endpoint.id, host: endpoint.host } });
  t.notMatch(JSON.stringify(await stateRow()), main.roles.get('app_owner')!.password, 'the catalog holds the Neon password only sealed');

  await core.databases.wake('acme', database.id);
  const targetNow = async () => core.targetFor((await routeByDatabase(core.catalog, database.id))!);
  const lease = await core.computes.acquire(await targetNow());
  t.equal(lease.address.kind, 'tcp');
  t.same(await query(lease.address, 'app_owner', 'SELECT current_user AS who'), [{ who: 'app_owner' }], 'the owner connects over TLS with the Neon password');
  lease.release();

  await core.databases.addRole('acme', database.id, 'reader');
  t.ok(main.roles.has('reader'), 'an added role is created at Neon');
  t.ok((await stateRow()).neon.passwords.reader && (await stateRow()).neon.passwords.app_owner, 'both sealed passwords are kept');

  const oldNeonPassword = main.roles.get('app_owner')!.password;
  await core.databases.resetPassword('acme', database.id, 'app_owner');
  t.not(main.roles.get('app_owner')!.password, oldNeonPassword, 'a reset rotates the Neon password too');
  await core.databases.suspend('acme', database.id);
  t.equal(endpoint.state, 'idle', 'suspend suspends the Neon endpoint');
  const woken = await core.computes.acquire(await targetNow());
  t.same(await query(woken.address, 'app_owner', 'SELECT 1 AS ok'), [{ ok: 1 }], 'the new Neon password works after the wake');
  t.same(await query(woken.address, 'reader', 'SELECT current_user AS who'), [{ who: 'reader' }]);
  woken.release();

  const written = await importProviderUsage(core.catalog, core.regions, new Date(Date.now() - 3_600_000), new Date(), core.log);
  t.ok(written > 0, 'Neon consumption was imported');
  const rows = async () => (await core.catalog.query(`SELECT metric, count(*)::int AS n FROM usage WHERE database_id = $1 GROUP BY metric ORDER BY metric`, [database.id])).rows;
  const before = await rows();
  t.same(before.map((r) => r.metric), ['active_time_ms', 'compute_time_ms', 'compute_unit_ms', 'storage_bytes', 'written_data_bytes'], 'as pgfleet metrics (compute unit time: Neon\'s compute time, CPU seconds)');
  await importProviderUsage(core.catalog, core.regions, new Date(Date.now() - 3_600_000), new Date(), core.log);
  t.same(await rows(), before, 'a second pull replaces its buckets, it does not add rows');

  await core.databases.delete('acme', database.id);
  t.notOk(fake.projects.has(project.id), 'deleting the database deletes the Neon project');
});

t.test('every request and answer followed Neon\'s OpenAPI document', async (t) => {
  t.same(fake.violations, []);
});
