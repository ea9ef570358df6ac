// Neon's rate limit: a fake that answers 429 above a few concurrent requests, and 200 creates
// and 200 wakes at once through pgfleet. Every one succeeds, and no project is made twice.
import t from 'tap';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { FakeNeon } from './fake-neon/fake-neon.ts';
import { neonRegionEnv } from './fake-neon/pgfleet-side.ts';
import { testConfig } from './helpers.ts';

const NEON_LIMIT = 4;
const BURST = 200;

// Projects without Postgres behind them: this is about the control plane only.
const fake = await FakeNeon.start({ computes: false, maxConcurrent: NEON_LIMIT, latencyMs: 15 });
t.teardown(() => fake.close());
const core = await startCore(testConfig({
  ...neonRegionEnv(fake),
  // More at once than the fake allows: pgfleet must meet 429s and slow down.
  PGFLEET_NEON_MAX_CONCURRENCY: String(NEON_LIMIT * 3),
  PGFLEET_NEON_OPERATION_TIMEOUT: '120',
  PGFLEET_WAKE_TIMEOUT: '120',
  PGFLEET_MAX_COMPUTES: String(BURST),
  // Wakes through the API (startProjectEndpoint): the ones Neon's rate limit applies to.
  PGFLEET_NEON_WAKE: 'api',
}), createLogger('silent'));
t.teardown(() => core.stop());
await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('acme', 'Acme')`);

t.test(`${BURST} creates at once against a Neon that answers 429 above ${NEON_LIMIT} requests`, async (t) => {
  const results = await Promise.allSettled(Array.from({ length: BURST }, (_, i) =>
    core.databases.create({ partnerId: 'acme', userId: `user-${i}`, region: 'aws-us-east-2' })));
  const errors = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
  t.same(errors, [], '0 errors');
  const throttled = fake.calls.filter((c) => c.status === 429).length;
  t.ok(throttled > 0, `the fake answered 429 (${throttled} times)`);
  t.equal(fake.callsOf('createProject') - fake.calls.filter((c) => c.operationId === 'createProject' && c.status === 429).length, BURST,
    'createProject was carried out once per database');
  const names = [...fake.projects.values()].map((p) => p.name).sort();
  t.equal(names.length, BURST, `${BURST} projects`);
  t.equal(new Set(names).size, BURST, 'no duplicates');
  const { rows } = await core.catalog.query(`SELECT id, status, provider_state->'neon'->>'projectId' AS project FROM databases ORDER BY id`);
  t.same(rows.map((r) => r.id), names, 'one project per catalog database, named after it');
  t.ok(rows.every((r) => r.status === 'ready' && fake.projects.get(r.project)?.name === r.id), 'each database keeps its own project');
});

t.test(`${BURST} wakes at once are queued the same way`, async (t) => {
  // Suspend every endpoint at the fake, so that each wake asks Neon to start it.
  for (const p of fake.projects.values()) {
    const e = fake.mainEndpoint(p);
    e.state = 'idle';
    e.pending = undefined;
  }
  const before = fake.callsOf('startProjectEndpoint');
  const { rows } = await core.catalog.query('SELECT id FROM databases');
  const results = await Promise.allSettled(rows.map((r) => core.databases.wake('acme', r.id)));
  t.same(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)), [], '0 errors');
  t.ok(fake.callsOf('startProjectEndpoint') - before >= BURST, 'every endpoint was started');
  t.ok([...fake.projects.values()].every((p) => fake.mainEndpoint(p).state === 'active'), 'all are active at Neon');
});

t.test("every request and answer followed Neon's OpenAPI document", async (t) => {
  t.same(fake.violations, []);
});
