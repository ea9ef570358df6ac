// Compute sizes: compute_units through the API, and on a host with cgroups, each local compute's
// processes (backends forked later too) inside a cgroup capped to its size, resized live, removed at suspend.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { ComputeCgroups, CU_MEMORY_BYTES, detectCgroups } from '../src/limits/cgroups.ts';
import { SOCKET_PORT } from '../src/pg/server.ts';
import { type ApiHarness, startApi } from './api-client.ts';

const host = detectCgroups(true);
const cgroups = new ComputeCgroups(host);

/** The limits a compute's cgroup holds now, in the host's own files. */
function limitsOf(branchId: string): { cpuQuotaUs: number; memoryBytes: number } {
  const [cpuDir, memoryDir = cpuDir] = cgroups.dirsOf(branchId);
  const read = (dir: string, file: string) => fs.readFileSync(path.join(dir!, file), 'utf8').trim();
  if (host.kind === 'v2') {
    return { cpuQuotaUs: Number(read(cpuDir!, 'cpu.max').split(' ')[0]), memoryBytes: Number(read(cpuDir!, 'memory.max')) };
  }
  return { cpuQuotaUs: Number(read(cpuDir!, 'cpu.cfs_quota_us')), memoryBytes: Number(read(memoryDir!, 'memory.limit_in_bytes')) };
}

/** Whether the process is in the compute's cgroup in every hierarchy pgfleet uses. */
function inCgroup(pid: number, branchId: string): boolean {
  return cgroups.dirsOf(branchId).every((dir) => fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid)));
}

const children = (pid: number) => fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

t.test('PGFLEET_CGROUPS=off is said, and sizes then set no cgroup', async (t) => {
  const off = detectCgroups(false);
  t.same(off, { kind: 'none', why: 'PGFLEET_CGROUPS=off' });
  t.match(new ComputeCgroups(off).describe(), /no cgroups \(PGFLEET_CGROUPS=off\).*can slow others/);
  t.same(new ComputeCgroups(off).dirsOf('br-x'), []);
});

t.test('compute_units through the API', async (t) => {
  const api: ApiHarness = await startApi({ PGFLEET_COMPUTE_UNITS: '0.5' });
  t.teardown(() => api.stop());
  const { key } = await api.partner();
  const plain = await api.request('POST', '/v1/databases', { key, body: { user_id: 'u1' } });
  t.equal(plain.status, 201);
  t.equal(plain.body.compute_units, 0.5, 'a database that names no size has the gateway default');
  const sized = await api.request('POST', '/v1/databases', { key, body: { user_id: 'u2', compute_units: 0.25 } });
  t.equal(sized.body.compute_units, 0.25);
  for (const bad of [0, 0.3, 17, -1, 'big', true]) {
    const res = await api.request('POST', '/v1/databases', { key, body: { user_id: 'u3', compute_units: bad } });
    t.equal(res.status, 400, `compute_units ${JSON.stringify(bad)} is refused`);
    t.match(res.body.error.message, /^compute_units/);
  }
  const patched = await api.request('PATCH', `/v1/databases/${sized.body.id}`, { key, body: { compute_units: 2 } });
  t.equal(patched.status, 200);
  t.equal(patched.body.compute_units, 2);
  const back = await api.request('PATCH', `/v1/databases/${sized.body.id}`, { key, body: { compute_units: null } });
  t.equal(back.body.compute_units, 0.5, 'null goes back to the default');
  t.equal((await api.request('PATCH', `/v1/databases/${sized.body.id}`, { key, body: { compute_units: 0.1 } })).status, 400);
});

t.test('a local compute runs inside a cgroup of its size', { skip: host.kind === 'none' ? `this host has no usable cgroups: ${cgroups.describe()}` : false }, async (t) => {
  const api = await startApi();
  t.teardown(() => api.stop());
  const { core } = api.gateway;
  t.equal(core.local.cgroups.host.kind, host.kind, 'the gateway found the same cgroups');
  const { key } = await api.partner();
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'sized', compute_units: 0.25 } })).body;
  t.equal((await api.request('POST', `/v1/databases/${db.id}/wake`, { key })).status, 200);
  const branchId = (await core.catalog.query('SELECT id FROM branches WHERE database_id = $1', [db.id])).rows[0].id as string;
  const postmaster = core.local.running.pid(branchId)!;
  t.ok(postmaster, 'the compute runs');
  t.same(limitsOf(branchId), { cpuQuotaUs: 25_000, memoryBytes: 0.25 * CU_MEMORY_BYTES }, '0.25 CU: a quarter of a CPU, 1 GiB');
  t.ok(inCgroup(postmaster, branchId), 'the postmaster is in it');
  const forked = children(postmaster);
  t.ok(forked.length >= 3, 'the postmaster has its background processes');
  for (const pid of forked) t.ok(inCgroup(pid, branchId), `its process ${pid} too`);

  // A backend forked after the move is born inside.
  const socketDir = core.local.layout.socketDir(branchId);
  const client = new pg.Client({ host: socketDir, port: SOCKET_PORT, user: 'pgfleet_admin', database: 'template1' });
  await client.connect();
  const backend = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  t.ok(inCgroup(backend, branchId), 'a new backend is in it');
  await client.end();

  const resized = await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { compute_units: 1 } });
  t.equal(resized.status, 200);
  t.same(limitsOf(branchId), { cpuQuotaUs: 100_000, memoryBytes: CU_MEMORY_BYTES }, 'a new size applies to the running compute at once');

  t.equal((await api.request('POST', `/v1/databases/${db.id}/suspend`, { key })).status, 200);
  t.notOk(cgroups.dirsOf(branchId).some((dir) => fs.existsSync(dir)), 'a suspended compute leaves no cgroup behind');
});
