import t from 'tap';
import type { NeonRegionSettings } from '../src/config-regions.ts';
import { ComputeStartError } from '../src/errors.ts';
import { createLogger } from '../src/log.ts';
import { NeonApiError } from '../src/providers/neon/neon-api.ts';
import { NeonProvider, type NeonProviderOptions } from '../src/providers/neon/neon-provider.ts';
import { neonStateOf } from '../src/providers/neon/neon-state.ts';
import type { BranchRef, ProviderState } from '../src/providers/provider.ts';
import { SecretBox } from '../src/secret-box.ts';
import { FAKE_API_KEY, FakeNeon } from './fake-neon/fake-neon.ts';
import { queryCompute as query } from './fake-neon/pgfleet-side.ts';
import { testRef } from './helpers.ts';

const fake = await FakeNeon.start();
t.teardown(() => fake.close());

const region: NeonRegionSettings = { regionId: 'aws-us-east-2', apiKey: FAKE_API_KEY, apiHost: fake.baseUrl, orgId: undefined };
const box = new SecretBox(Buffer.alloc(32, 7));
const makeProvider = (over: Partial<NeonProviderOptions> = {}) => new NeonProvider({
  region, box, ca: fake.ca.certPem, port: fake.port, operationTimeoutMs: 20_000,
  retry: { baseDelayMs: 20, maxDelayMs: 100 }, wake: 'api', log: createLogger('silent'), ...over,
});
const provider = makeProvider();

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
/** What the catalog's merge_provider_state does with a provider's answer: nested objects merged key by key. */
function mergeState(kept: ProviderState, patch: ProviderState): ProviderState {
  const out: ProviderState = { ...kept };
  for (const [k, v] of Object.entries(patch)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? mergeState(out[k], v) : v;
  return out;
}
const keep = (ref: BranchRef, state: ProviderState): BranchRef => ({ ...ref, providerState: mergeState(ref.providerState, state) });

t.test('lifecycle: create, start, query over TLS, suspend, wake, data intact, delete', async (t) => {
  let ref = testRef({ region: 'aws-us-east-2', quotas: { compute_time_seconds: 3600, storage_bytes: 1 << 30, max_connections: 10 }, suspendTimeoutSeconds: 0 });
  ref = keep(ref, await provider.create(ref));
  const s = neonStateOf(ref)!;
  const project = fake.projects.get(s.projectId)!;
  t.ok(project, 'a Neon project was created');
  const endpoint = fake.mainEndpoint(project);
  const main = fake.mainBranch(project);
  t.equal(project.regionId, 'aws-us-east-2');
  t.equal(project.pgVersion, 17);
  t.same(project.quota, { compute_time_seconds: 3600, data_transfer_bytes: 0, written_data_bytes: 0, logical_size_bytes: 1 << 30 },
    'quotas map to Neon project quotas (0 = unlimited at Neon)');
  t.equal(endpoint.suspendTimeoutSeconds, -1, 'suspend timeout 0 (never) is -1 at Neon');
  t.same(main.databases.map((d) => [d.name, d.owner]), [['app', 'alice']]);
  t.notMatch(JSON.stringify(ref.providerState), main.roles.get('alice')!.password, 'the Neon password is kept only sealed');

  const address = await provider.start(ref);
  t.match(address, { kind: 'tcp', host: endpoint.host, port: fake.port, servername: endpoint.host });
  t.equal(provider.status(ref), 'running');
  await query(address, 'alice', 'app', `CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept across suspends')`);
  t.same(await query(address, 'alice', 'app', 'SELECT current_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), [{ who: 'alice', ssl: true }], 'TLS, as the role');

  await provider.stop(ref);
  t.equal(endpoint.state, 'idle', 'stop suspends the endpoint');
  t.equal(provider.status(ref), 'stopped');
  const again = await provider.start(ref);
  t.equal(endpoint.state, 'active', 'a wake starts the suspended endpoint');
  t.same(await query(again, 'alice', 'app', 'SELECT body FROM notes'), [{ body: 'kept across suspends' }]);

  await provider.delete(ref);
  t.notOk(fake.projects.has(s.projectId), 'delete removes the project');
  await t.resolves(provider.delete(ref), 'deleting again is fine');
});

t.test("a database's major goes into createProject; Neon's majors are offered", async (t) => {
  t.same(provider.pgVersions, [14, 15, 16, 17, 18]);
  t.equal(provider.postgresVersion(16), '16', 'Neon tells the major only');
  let ref = testRef({ region: 'aws-us-east-2', pgVersion: 16 });
  ref = keep(ref, await provider.create(ref));
  t.equal(fake.projects.get(neonStateOf(ref)!.projectId)!.pgVersion, 16);
  await provider.delete(ref);
});

t.test("wake=connect: no API call; the first connection wakes the endpoint through Neon's proxy", async (t) => {
  const connecting = makeProvider({ wake: 'connect' });
  let ref = testRef({ region: 'aws-us-east-2' });
  ref = keep(ref, await connecting.create(ref));
  const endpoint = fake.mainEndpoint(fake.projects.get(neonStateOf(ref)!.projectId)!);
  await connecting.stop(ref);
  t.equal(endpoint.state, 'idle');
  const calls = fake.calls.length;
  const address = await connecting.start(ref);
  t.equal(fake.calls.length, calls, 'the wake asked nothing of the API');
  t.same(await query(address, 'alice', 'app', 'SELECT current_user AS who'), [{ who: 'alice' }], 'the first connection is served');
  t.equal(endpoint.state, 'active', "Neon's proxy started the endpoint");
  await connecting.delete(ref);
});

t.test('autoscaling: the endpoint gets the range as its autoscaling limits; current_cu from the endpoint; none named leaves Neon its default', async (t) => {
  let sized = testRef({ region: 'aws-us-east-2', autoscaling: { minCu: 0.5, maxCu: 0.5 } });
  sized = keep(sized, await provider.create(sized));
  const endpoint = fake.mainEndpoint(fake.projects.get(neonStateOf(sized)!.projectId)!);
  t.same(endpoint.computeUnits, [0.5, 0.5], 'created with min = max = 0.5 CU');
  await provider.updateSettings({ ...sized, autoscaling: { minCu: 0.5, maxCu: 2 } });
  t.same(endpoint.computeUnits, [0.5, 2], 'a new range reaches the endpoint (autoscaling_limit_min_cu / max_cu)');
  const ranged = { ...sized, autoscaling: { minCu: 0.5, maxCu: 2 } };
  endpoint.state = 'idle';
  t.equal(await provider.currentUnits(ranged), 0, 'an idle endpoint holds nothing');
  endpoint.state = 'active';
  t.equal(await provider.currentUnits(ranged), 0.5, 'an active endpoint counts at its floor (Neon reports no live size)');
  await provider.delete(sized);

  let plain = testRef({ region: 'aws-us-east-2' });
  plain = keep(plain, await provider.create(plain));
  t.same(fake.mainEndpoint(fake.projects.get(neonStateOf(plain)!.projectId)!).computeUnits, [0.25, 0.25], "Neon's own default");
  await provider.delete(plain);
  t.same(fake.violations, [], 'every request followed the OpenAPI document');
});

t.test('roles: added roles get a Neon password; a reset rotates it', async (t) => {
  let ref = testRef({ region: 'aws-us-east-2' });
  ref = keep(ref, await provider.create(ref));
  ref = keep({ ...ref, roles: ['alice', 'reader'] }, await provider.syncRoles({ ...ref, roles: ['alice', 'reader'] }));
  t.same(Object.keys(neonStateOf(ref)!.passwords).sort(), ['alice', 'reader']);
  const address = await provider.start(ref);
  t.same(await query(address, 'reader', 'app', 'SELECT current_user AS who'), [{ who: 'reader' }]);

  const before = neonStateOf(ref)!.passwords.alice;
  ref = keep(ref, await provider.resetPassword(ref, 'alice'));
  t.not(neonStateOf(ref)!.passwords.alice, before, 'a new sealed password is kept');
  await t.rejects(query(address, 'alice', 'app', 'SELECT 1'), /password authentication failed/, 'the old Neon password no longer works');
  t.same(await query(await provider.start(ref), 'alice', 'app', 'SELECT current_user AS who'), [{ who: 'alice' }], 'the new one does');
  await provider.delete(ref);
});

t.test('429 and 500 answers are retried; Retry-After is honoured', async (t) => {
  const ref = testRef({ region: 'aws-us-east-2' });
  fake.failNext('createProject', 429, 2, 0);
  fake.failNext('getProjectOperation', 500, 2);
  const before = fake.callsOf('createProject');
  const state = await provider.create(ref);
  t.equal(fake.callsOf('createProject') - before, 3, 'two 429s, then success');
  const kept = keep(ref, state);
  fake.failNext('getProjectEndpoint', 503, 1);
  fake.failNext('startProjectEndpoint', 500, 1);
  await t.resolves(provider.start(kept));
  await provider.delete(kept);
});

t.test('too many failures end with a clear error; 429s are waited out until the deadline', async (t) => {
  const few = makeProvider({ retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 20 } });
  const before = fake.callsOf('getProjectEndpoint');
  fake.failNext('getProjectEndpoint', 500, 3);
  const ref = testRef({ region: 'aws-us-east-2', providerState: { neon: { projectId: 'p-x', branchId: 'br-x', endpointId: 'ep-x', host: 'h', passwords: {} } } });
  const err = await few.start(ref).then(() => undefined, (e: Error) => e);
  t.type(err, NeonApiError);
  t.match(err?.message, /getProjectEndpoint failed after 3 attempts: HTTP 500/);
  t.equal((err as NeonApiError).httpStatus, 502, 'a provider error (502) at the API');
  t.equal(fake.callsOf('getProjectEndpoint') - before, 3, 'exactly the allowed attempts');
  t.notMatch(err?.message, FAKE_API_KEY, 'the API key is not in the message');

  fake.failNext('createProject', 429, 5, 0);
  const state = await few.create(testRef({ region: 'aws-us-east-2' }));
  t.ok(neonStateOf({ ...ref, providerState: state }), 'five 429s in a row are more than the attempts, and still waited out');
  await few.delete({ ...ref, providerState: state });

  const quick = makeProvider({ operationTimeoutMs: 300, retry: { baseDelayMs: 50, maxDelayMs: 100 } });
  fake.failNext('createProject', 429, 1000);
  t.teardown(() => fake.clearFaults());
  await t.rejects(quick.create(testRef({ region: 'aws-us-east-2' })), /createProject failed \(gave up after \d+ attempts: out of time\): HTTP 429/);
  fake.clearFaults();
  t.equal(fake.projects.size, 0, 'no project was left behind');
});

t.test('a Retry-After longer than allowed fails at once, saying so', async (t) => {
  const before = fake.callsOf('createProject');
  fake.failNext('createProject', 429, 1, 3600);
  await t.rejects(provider.create(testRef({ region: 'aws-us-east-2' })), /Neon asks to wait 3600 s/);
  t.equal(fake.callsOf('createProject') - before, 1);
});

t.test('an operation that never finishes ends with a clear error at the deadline', async (t) => {
  const quick = makeProvider({ operationTimeoutMs: 1500 });
  let ref = testRef({ region: 'aws-us-east-2' });
  ref = keep(ref, await provider.create(ref));
  await provider.stop(ref);
  fake.stickOperations('start_compute');
  t.teardown(() => fake.stickOperations('start_compute', false));
  const err = await quick.start(ref).then(() => undefined, (e: Error) => e);
  t.type(err, ComputeStartError, 'a compute start error (the proxy answers 57P03)');
  t.match(err?.message, /starting Neon endpoint ep-[a-z0-9]+: Neon operation start_compute \([0-9a-f-]+\) is still running after \d+ s; gave up/);
  t.equal(quick.status(ref), 'stopped');

  fake.stickOperations('create_timeline');
  t.teardown(() => fake.stickOperations('create_timeline', false));
  const projects = fake.projects.size;
  await t.rejects(quick.create(testRef({ region: 'aws-us-east-2' })), { name: 'ProviderError', message: /creating Neon project .*create_timeline.*still running/ });
  t.equal(fake.projects.size, projects, 'the half-made project was deleted');
  await provider.delete(ref);
});

t.test('every request and answer followed Neon\'s OpenAPI document', async (t) => {
  t.same(fake.violations, []);
});
