import type { CuRange } from '../../autoscaling.ts';
import type { CgroupCounters } from '../../limits/cgroup-sample.ts';
import { CU_MEMORY_BYTES } from '../../limits/cgroups.ts';

/** Memory kept free above the working set: a compute is near its limit past this share of it. */
const MEMORY_HEADROOM = 0.8;
/** CPU kept free above what a compute uses, so that a steady load is not throttled. */
const CPU_HEADROOM = 1.25;

/** One compute as the scaler follows it. */
export interface ScaledCompute {
  range: CuRange;
  cu: number;
  /** The last time it needed its size (or grew): a scale-down waits a quiet period after it. */
  busyAt: number;
  last?: { at: number; counters: CgroupCounters };
}

/** Why the size moves, for the log and the metrics. */
export type ScaleReason = 'cpu_throttled' | 'memory_limit' | 'quiet' | 'range';

const up4 = (cu: number) => Math.ceil(cu * 4 - 1e-9) / 4;
const clamp = (cu: number, r: CuRange) => Math.min(r.maxCu, Math.max(r.minCu, cu));

/**
 * The size a compute should have now, from two samples of its counters: up at once (doubling,
 * or straight to what it uses) when it was throttled or is near its memory limit; down after
 * `quietMs` without either, to what it uses plus headroom; never out of its range, never below use.
 */
export function nextSize(c: ScaledCompute, now: CgroupCounters, at: number, quietMs: number): { cu: number; reason: ScaleReason } | undefined {
  const last = c.last;
  c.last = { at, counters: now };
  const inRange = clamp(c.cu, c.range);
  if (inRange !== c.cu) return { cu: inRange, reason: 'range' };
  if (!last) return undefined;
  const seconds = (at - last.at) / 1000;
  if (seconds <= 0) return undefined;
  const cpuUsed = now.cpuUsageUs !== undefined && last.counters.cpuUsageUs !== undefined
    ? (now.cpuUsageUs - last.counters.cpuUsageUs) / 1e6 / seconds : undefined;
  const throttled = now.throttledPeriods > last.counters.throttledPeriods && (cpuUsed === undefined || cpuUsed >= 0.5 * c.cu);
  const memoryCu = now.workingSetBytes / CU_MEMORY_BYTES;
  const memoryTight = now.atMemoryLimit || memoryCu >= MEMORY_HEADROOM * c.cu
    || (now.memoryStallUs !== undefined && last.counters.memoryStallUs !== undefined && now.memoryStallUs > last.counters.memoryStallUs);
  // What it uses, with headroom: the least it may have.
  const needed = clamp(up4(Math.max(memoryCu / MEMORY_HEADROOM, (cpuUsed ?? 0) * CPU_HEADROOM)), c.range);
  if ((throttled || memoryTight) && c.cu < c.range.maxCu) {
    c.busyAt = at;
    return { cu: clamp(up4(Math.max(c.cu * 2, needed)), c.range), reason: memoryTight ? 'memory_limit' : 'cpu_throttled' };
  }
  // Without a CPU counter, only throttling says the compute is busy.
  if (throttled || needed >= c.cu || (cpuUsed === undefined && now.throttledPeriods > last.counters.throttledPeriods)) {
    c.busyAt = at;
    return undefined;
  }
  if (at - c.busyAt < quietMs) return undefined;
  c.busyAt = at;
  return { cu: needed, reason: 'quiet' };
}
