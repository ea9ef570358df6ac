// Helpers of the autoscaling tests and bench: what a compute's cgroup holds, load that burns CPU, waiting on the scaler.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { ComputeCgroups } from '../src/limits/cgroups.ts';
import { SOCKET_PORT } from '../src/pg/server.ts';
import type { Core } from '../src/gateway.ts';

/** The limits a compute's cgroup holds now, in the host's own files (v1 or v2). */
export function cgroupLimits(cgroups: ComputeCgroups, branchId: string): { cpuQuotaUs: number; memoryBytes: number; weight: number } {
  const [cpuDir, memoryDir = cpuDir] = cgroups.dirsOf(branchId);
  const read = (dir: string, file: string) => fs.readFileSync(path.join(dir!, file), 'utf8').trim();
  if (cgroups.host.kind === 'v2') {
    return { cpuQuotaUs: Number(read(cpuDir!, 'cpu.max').split(' ')[0]), memoryBytes: Number(read(cpuDir!, 'memory.high')), weight: Number(read(cpuDir!, 'cpu.weight')) };
  }
  return { cpuQuotaUs: Number(read(cpuDir!, 'cpu.cfs_quota_us')), memoryBytes: Number(read(memoryDir!, 'memory.limit_in_bytes')), weight: Number(read(cpuDir!, 'cpu.shares')) };
}

/** CPU time the compute's group used so far, in seconds (v1 cpuacct, v2 cpu.stat). */
export function cpuSeconds(cgroups: ComputeCgroups, branchId: string): number {
  const dirs = cgroups.dirsOf(branchId);
  if (cgroups.host.kind === 'v2') return Number(/usage_usec (\d+)/.exec(fs.readFileSync(path.join(dirs[0]!, 'cpu.stat'), 'utf8'))![1]) / 1e6;
  const acct = dirs[2] ?? dirs[0]!;
  return Number(fs.readFileSync(path.join(acct, 'cpuacct.usage'), 'utf8')) / 1e9;
}

/** A superuser session on the compute's private socket (its backend is born in the compute's cgroup). */
export async function adminClient(core: Core, branchId: string, database = 'template1'): Promise<pg.Client> {
  const client = new pg.Client({ host: core.local.layout.socketDir(branchId), port: SOCKET_PORT, user: 'pgfleet_admin', database });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** `n` sessions that each burn a CPU until stop() (or `seconds`). */
export async function burnCpu(core: Core, branchId: string, n: number, seconds = 120): Promise<{ stop(): Promise<void> }> {
  const clients = await Promise.all(Array.from({ length: n }, () => adminClient(core, branchId)));
  const runs = clients.map((c) => c.query(`DO $$ DECLARE t timestamptz := clock_timestamp(); x float8 := 0;
    BEGIN WHILE clock_timestamp() < t + interval '${seconds} seconds' LOOP x := x + sqrt(random()); END LOOP; END $$`).catch(() => {}));
  return {
    async stop() {
      // The sessions end from another one; were that refused, closing them ends their backends too.
      await adminClient(core, branchId).then(async (killer) => {
        await killer.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1)', [clients.map((c) => (c as any).processID)]);
        await killer.end();
      }).catch(() => {});
      await Promise.race([Promise.all(runs), new Promise((r) => setTimeout(r, 10_000))]);
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
    },
  };
}

/** Polls until `check` holds; its last value (or a timeout error naming `what`). */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, check: (v: T) => boolean, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (check(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
