// Autoscaling: ranges through the API, and on a host with cgroups, real computes in real cgroups:
// a CPU-bound tenant goes from its floor to its ceiling and back, a PATCH narrows a running range,
// a memory-hungry query gets room up to its ceiling (and past it only its own compute suffers),
// two busy tenants share the CPU in proportion to their floors.
import t from 'tap';
import { runCli } from '../api/cli.ts';
import { hostComputeUnits, parseRangeText } from '../src/autoscaling.ts';
import { loadConfig } from '../src/config.ts';
import { ComputeCgroups, CU_MEMORY_BYTES, detectCgroups } from '../src/limits/cgroups.ts';
import { type ApiHarness, ADMIN_KEY, startApi } from './api-client.ts';
import { adminClient, burnCpu, cgroupLimits, cpuSeconds, waitFor } from './autoscaling-helpers.ts';

const cgroups = new ComputeCgroups(detectCgroups(true));
const noCgroups = cgroups.enabled ? false : `this host has no usable cgroups: ${cgroups.describe()}`;

t.test('PGFLEET_AUTOSCALING', async (t) => {
  t.same(parseRangeText('0.25-2'), { minCu: 0.25, maxCu: 2 });
  t.same(parseRangeText('1'), { minCu: 1, maxCu: 1 });
  for (const bad of ['2-1', '0.3-1', '0-1', '1-17', 'big', '1-']) t.equal(parseRangeText(bad), undefined, `"${bad}" is no range`);
  t.throws(() => loadConfig({ PGFLEET_AUTOSCALING: '2-1' }), /PGFLEET_AUTOSCALING: must be floor-ceiling/);
  t.same(loadConfig({ PGFLEET_COMPUTE_UNITS: '0.5' }).compute.autoscaling, { minCu: 0.5, maxCu: 0.5 }, 'without it, PGFLEET_COMPUTE_UNITS as a fixed size');
});

let api: ApiHarness;
let key: string;
let pid: string;
t.before(async () => {
  api = await startApi({ PGFLEET_AUTOSCALING: '0.25-1', PGFLEET_AUTOSCALING_SCALE_DOWN_AFTER: '2', PGFLEET_SUSPEND_TIMEOUT: '0' });
  ({ key, id: pid } = await api.partner());
});
t.teardown(() => api.stop());

const create = (body: Record<string, unknown>) => api.request('POST', '/v1/databases', { key, body });
const branchOf = async (databaseId: string) =>
  (await api.gateway.core.catalog.query('SELECT id FROM branches WHERE database_id = $1', [databaseId])).rows[0].id as string;
const sizeOf = (branchId: string) => api.gateway.core.local.scaler.sizeOf(branchId);
const setting = async (branchId: string, name: string) => {
  const c = await adminClient(api.gateway.core, branchId);
  try {
    return (await c.query(`SHOW ${name}`)).rows[0][name] as string;
  } finally {
    await c.end();
  }
};

t.test('ranges through the API: defaults, compute_units as a fixed range, precise 400s', async (t) => {
  const plain = await create({ user_id: 'plain' });
  t.equal(plain.status, 201);
  t.same(plain.body.autoscaling, { min_cu: 0.25, max_cu: 1 }, 'PGFLEET_AUTOSCALING when neither the database nor its partner names one');
  t.equal(plain.body.current_cu, 0, 'nothing runs yet');
  t.equal(plain.body.compute_units, 1, 'compute_units shows the ceiling');
  const fixed = await create({ user_id: 'fixed', compute_units: 0.5 });
  t.same(fixed.body.autoscaling, { min_cu: 0.5, max_cu: 0.5 }, 'compute_units is min = max');
  const refusals: [Record<string, unknown>, string, RegExp][] = [
    [{ autoscaling: { min_cu: 1, max_cu: 0.5 } }, 'invalid_autoscaling', /^autoscaling\.min_cu: 1 is above max_cu 0\.5/],
    [{ autoscaling: { min_cu: 0.3, max_cu: 1 } }, 'invalid_autoscaling', /^autoscaling\.min_cu: must be a multiple of 0\.25/],
    [{ autoscaling: { min_cu: 0.25, max_cu: 17 } }, 'invalid_autoscaling', /^autoscaling\.max_cu/],
    [{ autoscaling: { min_cu: 0.25, max_cu: 1 }, compute_units: 1 }, 'invalid_autoscaling', /either autoscaling or compute_units/],
  ];
  const tooBig = Math.ceil(hostComputeUnits().cpu * 4 + 1) / 4;
  if (tooBig <= 16) refusals.push([{ autoscaling: { min_cu: tooBig, max_cu: 16 } }, 'floor_exceeds_host', /^autoscaling\.min_cu: .* more than this host's/]);
  for (const [body, code, message] of refusals) {
    const res = await create({ user_id: 'bad', ...body });
    t.equal(res.status, 400, `${JSON.stringify(body)} is a 400`);
    t.equal(res.body.error.code, code);
    t.match(res.body.error.message, message);
    const patched = await api.request('PATCH', `/v1/databases/${plain.body.id}`, { key, body });
    t.equal(patched.body.error?.code, code, 'the same in a PATCH');
  }
  const missing = await create({ user_id: 'bad', autoscaling: { min_cu: 0.25 } });
  t.equal(missing.status, 400, 'a range without max_cu is a 400');

  const bad = await api.request('PATCH', `/v1/partners/${pid}`, { key: ADMIN_KEY, body: { default_autoscaling: { min_cu: 2, max_cu: 1 } } });
  t.equal(bad.body.error.code, 'invalid_autoscaling', "a partner's default is checked the same way");
  const partner = await api.request('PATCH', `/v1/partners/${pid}`, { key: ADMIN_KEY, body: { default_autoscaling: { min_cu: 0.5, max_cu: 1 } } });
  t.same(partner.body.default_autoscaling, { min_cu: 0.5, max_cu: 1 });
  t.same((await api.request('GET', `/v1/databases/${plain.body.id}`, { key })).body.autoscaling, { min_cu: 0.5, max_cu: 1 }, "the partner's default applies to a database without its own");
  t.same((await api.request('GET', `/v1/databases/${fixed.body.id}`, { key })).body.autoscaling, { min_cu: 0.5, max_cu: 0.5 }, 'not to one with its own');
  await api.request('PATCH', `/v1/partners/${pid}`, { key: ADMIN_KEY, body: { default_autoscaling: null } });
  t.same((await api.request('GET', `/v1/databases/${plain.body.id}`, { key })).body.autoscaling, { min_cu: 0.25, max_cu: 1 }, 'null: back to PGFLEET_AUTOSCALING');
});

t.test('a CPU-bound tenant scales from its floor to its ceiling, a PATCH narrows it while it runs, and it comes back down when quiet', { skip: noCgroups }, async (t) => {
  const db = (await create({ user_id: 'cpu', autoscaling: { min_cu: 0.25, max_cu: 1 } })).body;
  t.equal((await api.request('POST', `/v1/databases/${db.id}/wake`, { key })).status, 200);
  const branchId = await branchOf(db.id);
  // It starts at its floor; its own start-up may have been throttled there (it then grew), and it settles back when quiet.
  t.ok((sizeOf(branchId) ?? 0) >= 0.25, 'it runs at its floor or above');
  // Read together: on a busy host even this test's own queries may throttle it up again for a while.
  const atFloor = () => waitFor('the floor with its limits and settings', async () => ({
    cu: sizeOf(branchId), limits: cgroupLimits(cgroups, branchId),
    workMem: await setting(branchId, 'work_mem'), cacheSize: await setting(branchId, 'effective_cache_size'),
  }), (f) => f.cu === 0.25 && f.limits.cpuQuotaUs === 25_000 && f.workMem === '4MB' && f.cacheSize === '768MB', 30_000, 200);
  const floor = await atFloor();
  t.pass('at its floor, work_mem 4MB and effective_cache_size 768MB: settings sized for 0.25 CU');
  t.same(floor.limits, { cpuQuotaUs: 25_000, memoryBytes: 0.25 * CU_MEMORY_BYTES, weight: 256 }, 'a quarter CPU, 1 GiB, a weight of its floor');
  t.equal((await waitFor('current_cu', () => api.request('GET', `/v1/databases/${db.id}`, { key }), (r) => r.body.current_cu === 0.25)).body.current_cu, 0.25);

  const load = await burnCpu(api.gateway.core, branchId, 2);
  const loadAt = Date.now();
  try {
    await waitFor('the ceiling', () => sizeOf(branchId), (cu) => cu === 1, 30_000);
    t.pass(`throttled at each size, it doubled to its ceiling (${Date.now() - loadAt} ms)`);
    t.equal(cgroupLimits(cgroups, branchId).cpuQuotaUs, 100_000, 'its CPU quota is the ceiling');
    t.equal(cgroupLimits(cgroups, branchId).weight, 256, 'its weight stays that of its floor');
    // The postmaster rereads its files on the SIGHUP; sessions started after that have the new values.
    t.equal(await waitFor('work_mem', () => setting(branchId, 'work_mem'), (v) => v === '16MB', 10_000), '16MB', 'work_mem followed the size (a reload)');
    t.equal(await setting(branchId, 'effective_cache_size'), '3GB');
    await waitFor('current_cu 1', () => api.request('GET', `/v1/databases/${db.id}`, { key }), (r) => r.body.current_cu === 1);

    const narrowed = await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { autoscaling: { min_cu: 0.25, max_cu: 0.5 } } });
    t.equal(narrowed.status, 200);
    t.equal(sizeOf(branchId), 0.5, 'a narrower range moves the running compute into it at once');
    t.equal(cgroupLimits(cgroups, branchId).cpuQuotaUs, 50_000);
    await new Promise((r) => setTimeout(r, 1500));
    t.equal(sizeOf(branchId), 0.5, 'still busy, it stays at its new ceiling');
  } finally {
    await load.stop();
  }
  await atFloor();
  t.pass('quiet for the scale-down period, it went back to its floor: its quota and settings too');

  const chart = await waitFor('the size history', () => api.request('GET', `/v1/databases/${db.id}/compute_sizes`, { key }),
    (r) => r.body.sizes?.at(-1)?.cu === 0.25 && r.body.sizes.length >= 4);
  const sizes = chart.body.sizes.map((p: { cu: number }) => p.cu) as number[];
  t.ok(sizes.includes(1) && sizes.includes(0.5), `the chart holds each size it took: ${sizes.join(' → ')}`);
  const metrics = await (await fetch(`${api.url}/metrics`)).text();
  t.match(metrics, /pgfleet_compute_scalings_total\{direction="up",reason="cpu_throttled"\} [1-9]/, 'scalings are counted');
  t.match(metrics, /pgfleet_compute_scalings_total\{direction="down",reason="quiet"\} [1-9]/);
  t.equal((await api.request('GET', `/v1/databases/${db.id}/compute_sizes?from=yesterday`, { key })).body.error.code, 'bad_request');

  t.equal((await api.request('POST', `/v1/databases/${db.id}/suspend`, { key })).status, 200);
  const usage = (await api.request('GET', `/v1/databases/${db.id}/usage?granularity=hourly`, { key })).body.periods as { usage: Record<string, number> }[];
  const total = (name: string) => usage.reduce((sum, p) => sum + (p.usage[name] ?? 0), 0);
  const [seconds, unitSeconds] = [total('compute_time_seconds'), total('compute_unit_seconds')];
  t.ok(unitSeconds > seconds * 0.25 * 1.1 && unitSeconds < seconds * 1,
    `compute unit seconds count the size held over time: ${unitSeconds.toFixed(1)} for ${seconds.toFixed(1)} s between 0.25 and 1 CU`);
  t.equal((await waitFor('current_cu 0', () => api.request('GET', `/v1/databases/${db.id}`, { key }), (r) => r.body.current_cu === 0)).body.current_cu, 0, 'suspended: 0');
});

t.test('a memory-hungry query gets room up to its ceiling; past it, only its own compute suffers', { skip: noCgroups }, async (t) => {
  const hungry = (await create({ user_id: 'hungry', autoscaling: { min_cu: 0.25, max_cu: 0.5 } })).body;
  const quiet = (await create({ user_id: 'neighbour', compute_units: 0.25 })).body;
  for (const db of [hungry, quiet]) t.equal((await api.request('POST', `/v1/databases/${db.id}/wake`, { key })).status, 200);
  const [hungryBranch, quietBranch] = [await branchOf(hungry.id), await branchOf(quiet.id)];
  const core = api.gateway.core;
  const neighbourPostmaster = core.local.running.pid(quietBranch);
  // The neighbour asks SELECT 1 all along, on one session.
  const neighbour = await adminClient(core, quietBranch);
  const neighbourPid = (await neighbour.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  let asked = 0;
  let failed = 0;
  let asking = true;
  const asker = (async () => {
    while (asking) {
      await neighbour.query('SELECT 1').then(() => asked++, () => failed++);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  // 1.5 GB held at once: more than the floor's 1 GiB, less than the ceiling's 2 GiB.
  const big = (n: number) => `SELECT ${Array.from({ length: n }, (_, i) => `octet_length(s${i})`).join(' + ')} AS bytes
    FROM (SELECT ${Array.from({ length: n }, (_, i) => `repeat(repeat('${i}', 1000000), 500) AS s${i}`).join(', ')}) t`;
  const c = await adminClient(core, hungryBranch);
  let at = Date.now();
  const { rows } = await c.query(big(3));
  t.comment(`1.5 GB query: ${Date.now() - at} ms`);
  at = Date.now();
  t.equal(Number(rows[0].bytes), 1_500_000_000, 'the query that needs 1.5 GB ran');
  t.equal(sizeOf(hungryBranch), 0.5, 'its compute grew to its ceiling');
  t.equal(cgroupLimits(cgroups, hungryBranch).memoryBytes, 2 * 1024 ** 3, 'its memory limit is the ceiling\'s 2 GiB');

  // 2.5 GB: past the ceiling. The kernel ends the backend; Postgres restarts that compute's sessions.
  const past = await c.query(big(5)).then(() => 'ran', (err: Error) => err.message);
  t.not(past, 'ran', `past its ceiling the query does not run (${past})`);
  t.comment(`2.5 GB query: ${Date.now() - at} ms`);
  at = Date.now();
  await c.end().catch(() => {});
  await waitFor('the hungry compute back', () => adminClient(core, hungryBranch).then((x) => x.end().then(() => true), () => false), (ok) => ok, 60_000, 200);
  t.pass('its compute recovers');
  t.comment(`recovery: ${Date.now() - at} ms`);
  asking = false;
  await asker;
  t.equal(failed, 0, `the neighbour's ${asked} SELECT 1 all answered`);
  t.ok(asked > 10);
  t.equal((await neighbour.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, neighbourPid, 'on the same session');
  t.equal(core.local.running.pid(quietBranch), neighbourPostmaster, 'its compute never restarted');
  await neighbour.end();
  for (const db of [hungry, quiet]) await api.request('POST', `/v1/databases/${db.id}/suspend`, { key });
});

t.test('two busy tenants share the CPU in proportion to their floors', { skip: noCgroups }, async (t) => {
  const small = (await create({ user_id: 'small-floor', autoscaling: { min_cu: 0.25, max_cu: 2 } })).body;
  const large = (await create({ user_id: 'large-floor', autoscaling: { min_cu: 0.75, max_cu: 2 } })).body;
  for (const db of [small, large]) t.equal((await api.request('POST', `/v1/databases/${db.id}/wake`, { key })).status, 200);
  const [a, b] = [await branchOf(small.id), await branchOf(large.id)];
  t.same([cgroupLimits(cgroups, a).weight, cgroupLimits(cgroups, b).weight], [256, 768], 'weights in proportion to the floors');
  const core = api.gateway.core;
  // Three CPU-bound sessions each, on a host of two CPUs: more than the host can give both.
  const loads = await Promise.all([burnCpu(core, a, 3), burnCpu(core, b, 3)]);
  try {
    // Counted only over intervals in which neither size changed: then either the host is short and only the
    // weights decide, or both are held by quotas, which are their floors (a size that grew is above its share).
    // A host busy with other work moves sizes often and gives the pair little, so the count goes on until
    // 4 s of such intervals and 1.5 CPU seconds between them.
    const sample = () => ({ at: Date.now(), sizes: `${sizeOf(a)}/${sizeOf(b)}`, cpu: [cpuSeconds(cgroups, a), cpuSeconds(cgroups, b)] });
    const used = [0, 0];
    const sizesSeen = new Set<string>();
    let stableMs = 0;
    let last = sample();
    for (const start = Date.now(); (stableMs < 4000 || used[0]! + used[1]! < 1.5) && Date.now() - start < 60_000;) {
      await new Promise((r) => setTimeout(r, 250));
      const now = sample();
      if (now.sizes === last.sizes) {
        stableMs += now.at - last.at;
        used[0]! += now.cpu[0]! - last.cpu[0]!;
        used[1]! += now.cpu[1]! - last.cpu[1]!;
        sizesSeen.add(now.sizes);
      }
      last = now;
    }
    t.comment(`sizes while counted: ${[...sizesSeen].join(', ')}; ${stableMs} ms counted`);
    t.ok(used[0]! > 0, `the smaller floor is not starved (${used[0]!.toFixed(2)} CPU s)`);
    t.ok(used[1]! / used[0]! > 1.8, `the floor three times larger got about three times the CPU: ${used[1]!.toFixed(2)} vs ${used[0]!.toFixed(2)} CPU s (×${(used[1]! / used[0]!).toFixed(2)})`);
  } finally {
    await Promise.all(loads.map((l) => l.stop()));
  }
  for (const db of [small, large]) await api.request('POST', `/v1/databases/${db.id}/suspend`, { key });
});

t.test('the CLI: a range on create, the quota on compute unit seconds, the range and size over time', async (t) => {
  const lines: string[] = [];
  const cli = async (...args: string[]) => {
    lines.length = 0;
    const code = await runCli([...args, '--url', api.url, '--key', key], (l) => lines.push(l));
    return { code, out: lines.join('\n') };
  };
  const created = await cli('db', 'create', '--user', 'cli-sized', '--autoscaling', '0.5-1', '--json');
  t.equal(created.code, 0);
  const db = JSON.parse(created.out);
  t.same(db.autoscaling, { min_cu: 0.5, max_cu: 1 });
  t.equal((await cli('db', 'update', db.id, '--autoscaling', '2-1')).code, 1, 'a floor above its ceiling is refused');
  const quota = await cli('quotas', 'set', db.id, '--compute-unit-seconds', '3600', '--json');
  t.equal(JSON.parse(quota.out).compute_unit_seconds, 3600, 'compute_unit_seconds is a quota like the others');
  t.match((await cli('db', 'list')).out, new RegExp(`^${db.id}\\t.*\\t0 CU \\(0\\.5-1\\)$`, 'm'), 'db list shows the size now and the range');
  const sizes = await cli('db', 'sizes', db.id);
  t.equal(sizes.code, 0);
  t.match(sizes.out, /^range: 0\.5–1 CU, now: 0 CU\n1 CU ┤ {60}\n/, 'db sizes: the range, the size now, the chart (nothing ran)');
});
