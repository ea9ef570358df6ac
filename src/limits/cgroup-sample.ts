import fs from 'node:fs';
import path from 'node:path';
import type { ComputeCgroups } from './cgroups.ts';

/** What a compute's cgroup counted so far (counters only grow) and holds now. */
export interface CgroupCounters {
  /** CPU time used in all, in µs; undefined where the host does not count it per group (v1 without cpuacct). */
  cpuUsageUs: number | undefined;
  /** CFS periods in which the group hit its quota. */
  throttledPeriods: number;
  /** µs the group's tasks were stalled for memory (v2 PSI `some`); undefined on v1. */
  memoryStallUs: number | undefined;
  /** Memory in use, less the file cache the kernel can drop at once (inactive files). */
  workingSetBytes: number;
  /** Whether a task waits at the memory limit now (v1 under_oom with the OOM killer off; v2 memory.high hit since the last read). */
  atMemoryLimit: boolean;
  /** v2 only: the memory.high events counter (atMemoryLimit is its growth). */
  highEvents?: number;
}

const read = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

/** `key value` lines (cpu.stat, memory.stat, memory.events, oom_control) as a map. */
function keyed(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) out.set(k, Number(v));
  }
  return out;
}

/** `some avg10=… avg60=… avg300=… total=N` of a PSI file: the `some` total. */
function psiTotal(text: string | undefined): number | undefined {
  const m = text ? /^some .*total=(\d+)/m.exec(text) : null;
  return m ? Number(m[1]) : undefined;
}

/**
 * Reads a compute's counters from its cgroup files: a handful of small reads per compute, the
 * scaler's whole cost. undefined when the group is gone (the compute stopped).
 */
export function readCounters(cgroups: ComputeCgroups, name: string, previous?: CgroupCounters, limitBytes = Infinity): CgroupCounters | undefined {
  const host = cgroups.host;
  if (host.kind === 'v2') {
    const [dir] = cgroups.dirsOf(name);
    const cpu = keyed(read(path.join(dir!, 'cpu.stat')));
    const current = read(path.join(dir!, 'memory.current'));
    if (current === undefined || !cpu.size) return undefined;
    const stat = keyed(read(path.join(dir!, 'memory.stat')));
    const highEvents = keyed(read(path.join(dir!, 'memory.events'))).get('high') ?? 0;
    return {
      cpuUsageUs: cpu.get('usage_usec'),
      throttledPeriods: cpu.get('nr_throttled') ?? 0,
      memoryStallUs: psiTotal(read(path.join(dir!, 'memory.pressure'))),
      workingSetBytes: Math.max(0, Number(current) - (stat.get('inactive_file') ?? 0)),
      atMemoryLimit: previous?.highEvents !== undefined && highEvents > previous.highEvents,
      highEvents,
    };
  }
  if (host.kind === 'v1') {
    const [cpuDir, memDir, acctDir] = cgroups.dirsOf(name);
    const cpu = keyed(read(path.join(cpuDir!, 'cpu.stat')));
    const usage = read(path.join(memDir!, 'memory.usage_in_bytes'));
    if (usage === undefined || !cpu.size) return undefined;
    const acct = read(path.join(acctDir ?? cpuDir!, 'cpuacct.usage'));
    // memory.stat is the costly read (the kernel sums its counters): only when the usage, file cache
    // included, is near the limit does the cache that can be dropped make a difference.
    const stat = Number(usage) >= 0.7 * limitBytes ? keyed(read(path.join(memDir!, 'memory.stat'))) : new Map<string, number>();
    const oom = keyed(read(path.join(memDir!, 'memory.oom_control')));
    return {
      cpuUsageUs: acct === undefined ? undefined : Number(acct) / 1000,
      throttledPeriods: cpu.get('nr_throttled') ?? 0,
      memoryStallUs: undefined,
      workingSetBytes: Math.max(0, Number(usage) - (stat.get('total_inactive_file') ?? 0)),
      atMemoryLimit: oom.get('under_oom') === 1,
    };
  }
  return undefined;
}
