import fs from 'node:fs';
import path from 'node:path';

/**
 * A compute's size in Neon's unit: 1 compute unit (CU) = 1 CPU and 4 GiB of memory. Sizes are
 * multiples of 0.25 CU, as on Neon.
 */
export const CU_MEMORY_BYTES = 4 * 1024 ** 3;
export const MIN_COMPUTE_UNITS = 0.25;
export const MAX_COMPUTE_UNITS = 16;
export const isComputeUnits = (cu: number): boolean => cu >= MIN_COMPUTE_UNITS && cu <= MAX_COMPUTE_UNITS && Number.isInteger(cu * 4);

/** CFS period: the CPU cap is `cu` periods of CPU time per period, spread over any number of cores. */
export const CPU_PERIOD_US = 100_000;

/** A compute's size now, its floor (its CPU weight) and its ceiling (where its memory limit is hard). */
export interface CgroupSize {
  cu: number;
  floorCu: number;
  ceilingCu: number;
}

/** What the host lets pgfleet do to bound each compute's CPU and memory. */
export type CgroupHost =
  /** cgroup v2 with cpu and memory delegated to pgfleet's own cgroup (e.g. systemd Delegate=yes). */
  | { kind: 'v2'; parent: string }
  /**
   * cgroup v1: a writable cpu hierarchy and a writable memory hierarchy; the cpuacct one (CPU
   * time used) when it is mounted apart from cpu and writable (co-mounted, its files are in cpu's).
   */
  | { kind: 'v1'; cpuParent: string; memoryParent: string; cpuacctParent?: string }
  | { kind: 'none'; why: string };

interface Mount { dir: string; fstype: string; options: string[] }

function mounts(): Mount[] {
  // mountinfo: id parent major:minor root mountpoint options [optional…] - fstype source superoptions
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [left, right = ''] = line.split(' - ');
    const [fstype = '', , superOptions = ''] = right.split(' ');
    return { dir: left!.split(' ')[4]!, fstype, options: superOptions.split(',') };
  });
}

/** This process's cgroup path in a hierarchy: the v2 one (''), or the v1 one holding `controller`. */
function ownCgroup(controller: string): string | undefined {
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, cgPath] = line.split(':');
    if (cgPath === undefined) continue;
    if (controllers!.split(',').includes(controller)) return cgPath;
  }
  return undefined;
}

/** Makes `<parent>/pgfleet` when the directory can be written; undefined otherwise. */
function makeParent(dir: string): string | undefined {
  const parent = path.join(dir, 'pgfleet');
  try {
    fs.mkdirSync(parent, { recursive: true });
    return parent;
  } catch {
    return undefined;
  }
}

/**
 * What this host offers, decided once at start. Computes go into groups under pgfleet's own
 * cgroup (never above it: a service manager's accounting and limits of pgfleet still hold).
 */
export function detectCgroups(enabled: boolean): CgroupHost {
  if (!enabled) return { kind: 'none', why: 'PGFLEET_CGROUPS=off' };
  let all: Mount[];
  try {
    all = mounts();
  } catch {
    return { kind: 'none', why: 'no /proc/self/mountinfo' };
  }
  const v2 = all.find((m) => m.fstype === 'cgroup2');
  const own2 = ownCgroup('');
  if (v2 && own2 !== undefined) {
    const dir = path.join(v2.dir, own2);
    const delegated = readText(path.join(dir, 'cgroup.subtree_control'))?.split(/\s+/) ?? [];
    if (delegated.includes('cpu') && delegated.includes('memory')) {
      const parent = makeParent(dir);
      if (parent && enable(parent, '+cpu +memory')) return { kind: 'v2', parent };
    }
  }
  const cpu = all.find((m) => m.fstype === 'cgroup' && m.options.includes('cpu'));
  const memory = all.find((m) => m.fstype === 'cgroup' && m.options.includes('memory'));
  if (cpu && memory) {
    const cpuParent = makeParent(path.join(cpu.dir, ownCgroup('cpu') ?? '/'));
    const memoryParent = makeParent(path.join(memory.dir, ownCgroup('memory') ?? '/'));
    const cpuacct = all.find((m) => m.fstype === 'cgroup' && m.options.includes('cpuacct'));
    const cpuacctParent = cpuacct && cpuacct !== cpu ? makeParent(path.join(cpuacct.dir, ownCgroup('cpuacct') ?? '/')) : undefined;
    if (cpuParent && memoryParent) return { kind: 'v1', cpuParent, memoryParent, ...(cpuacctParent ? { cpuacctParent } : {}) };
  }
  if (v2) return { kind: 'none', why: 'cgroup v2 without the cpu and memory controllers delegated to pgfleet\'s cgroup (systemd: Delegate=yes)' };
  return { kind: 'none', why: cpu && memory ? 'the cgroup hierarchies are not writable (pgfleet is not root)' : 'no cgroup cpu and memory controllers' };
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function enable(dir: string, controllers: string): boolean {
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), controllers);
    return true;
  } catch {
    return false;
  }
}

/** A process and every process it forked, children first found through /proc. */
function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const children = readText(`/proc/${out[i]}/task/${out[i]}/children`);
    if (children) out.push(...children.split(/\s+/).map(Number));
  }
  return out;
}

/**
 * One cgroup per running compute (named after its branch): a CPU cap and weight, and a memory
 * limit, from its compute units. The postmaster and what it forked so far are moved in once it
 * is ready; every backend it forks later is born inside.
 */
export class ComputeCgroups {
  constructor(readonly host: CgroupHost) {}

  get enabled(): boolean {
    return this.host.kind !== 'none';
  }

  /** One line for the start-up log. */
  describe(): string {
    switch (this.host.kind) {
      case 'v2': return `cgroup v2 under ${this.host.parent}: each compute's CPU and memory are capped by its compute units`;
      case 'v1': return `cgroup v1 under ${this.host.cpuParent} and ${this.host.memoryParent}: each compute's CPU and memory are capped by its compute units`;
      default: return `no cgroups (${this.host.why}): compute units are not enforced; only the per-compute Postgres settings bound a tenant, and one tenant's CPU-bound queries can slow others`;
    }
  }

  /** The group directories of a compute (one per hierarchy). */
  dirsOf(name: string): string[] {
    switch (this.host.kind) {
      case 'v2': return [path.join(this.host.parent, name)];
      case 'v1': return [path.join(this.host.cpuParent, name), path.join(this.host.memoryParent, name),
        ...(this.host.cpuacctParent ? [path.join(this.host.cpuacctParent, name)] : [])];
      default: return [];
    }
  }

  /** Creates the compute's group with its limits and moves the postmaster's process tree into it. */
  place(name: string, postmasterPid: number, size: CgroupSize): void {
    if (!this.enabled) return;
    for (const dir of this.dirsOf(name)) fs.mkdirSync(dir, { recursive: true });
    this.resize(name, size);
    for (const dir of this.dirsOf(name)) {
      for (const pid of processTree(postmasterPid)) {
        try {
          fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // a process that just ended
        }
      }
    }
  }

  /**
   * Sets the limits of an existing group (a running compute's size changes at once): a CPU cap and
   * a memory limit of `cu`, a CPU weight in proportion to the floor (what it gets when the host is
   * short). Below its ceiling a compute at its memory limit is paused, not killed, until the scaler
   * raises it (v1: the OOM killer off; v2: memory.high at the size, memory.max at the ceiling);
   * at its ceiling the limit is hard.
   */
  resize(name: string, size: CgroupSize): void {
    const quota = Math.round(size.cu * CPU_PERIOD_US);
    const memory = Math.round(size.cu * CU_MEMORY_BYTES);
    const atCeiling = size.cu >= size.ceilingCu;
    const write = (dir: string, file: string, value: string | number) => fs.writeFileSync(path.join(dir, file), String(value));
    if (this.host.kind === 'v2') {
      const [dir] = this.dirsOf(name);
      write(dir!, 'cpu.max', `${quota} ${CPU_PERIOD_US}`);
      write(dir!, 'cpu.weight', Math.max(1, Math.min(10_000, Math.round(100 * size.floorCu))));
      write(dir!, 'memory.max', Math.round(size.ceilingCu * CU_MEMORY_BYTES));
      write(dir!, 'memory.high', atCeiling ? 'max' : memory);
    } else if (this.host.kind === 'v1') {
      const [cpu, mem] = this.dirsOf(name);
      write(cpu!, 'cpu.cfs_period_us', CPU_PERIOD_US);
      write(cpu!, 'cpu.cfs_quota_us', quota);
      write(cpu!, 'cpu.shares', Math.max(2, Math.round(1024 * size.floorCu)));
      // At the ceiling the limit goes up first, then the OOM killer is back (a paused task fits by
      // then, or is killed only if it still does not); below it the killer is off before the limit moves.
      if (atCeiling) {
        write(mem!, 'memory.limit_in_bytes', memory);
        write(mem!, 'memory.oom_control', 0);
      } else {
        write(mem!, 'memory.oom_control', 1);
        write(mem!, 'memory.limit_in_bytes', memory);
      }
    }
  }

  /** The processes in a compute's group now. */
  processesOf(name: string): number[] {
    const [dir] = this.dirsOf(name);
    const text = dir ? readText(path.join(dir, 'cgroup.procs')) : undefined;
    return text ? text.split('\n').map(Number) : [];
  }

  /**
   * Ends what is left in a compute's group before it starts again: the backends of a postmaster
   * that died (kill -9, OOM) linger attached to its shared memory and a new postmaster would
   * refuse to start. They get SIGQUIT, as their postmaster would have sent, then SIGKILL.
   */
  async drain(name: string, timeoutMs = 5000): Promise<void> {
    for (const signal of ['SIGQUIT', 'SIGKILL'] as const) {
      const left = this.processesOf(name);
      if (left.length === 0) return;
      for (const pid of left) {
        try {
          process.kill(pid, signal);
        } catch {
          // already gone
        }
      }
      for (const deadline = Date.now() + timeoutMs; this.processesOf(name).length && Date.now() < deadline;) {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** Removes a stopped compute's group (a group with processes left is kept: rmdir refuses it). */
  remove(name: string): void {
    for (const dir of this.dirsOf(name)) {
      try {
        fs.rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
      }
    }
  }
}
