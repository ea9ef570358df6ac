import type { Logger } from 'pino';
import type { CuRange } from '../../autoscaling.ts';
import { readCounters } from '../../limits/cgroup-sample.ts';
import { type ComputeCgroups, CU_MEMORY_BYTES } from '../../limits/cgroups.ts';
import { type ScaleReason, type ScaledCompute, nextSize } from './scaling-policy.ts';

/** How often each running compute's cgroup is sampled. */
export const SCALER_INTERVAL_MS = 500;

/** What the scaler needs of a running compute: where its group is, and how to apply a size. */
export interface ScalerTarget {
  branchId: string;
  databaseId: string;
  /** Sets the cgroup and the Postgres settings of the size (a reload); throws when the kernel refuses. */
  apply(cu: number, range: CuRange): Promise<void>;
}

/** One change, as the log, the metrics and the catalog (current_cu, the charts) learn it. */
export interface SizeChange {
  branchId: string;
  databaseId: string;
  from: number;
  to: number;
  reason: ScaleReason | 'start' | 'stop';
}

interface Followed extends ScaledCompute {
  target: ScalerTarget;
  applying: boolean;
}

/**
 * The scaler of this node's computes: every SCALER_INTERVAL_MS it reads each running compute's
 * cgroup counters and moves its size within its range (scaling-policy.ts). A compute is followed
 * from its start (at its floor) to its stop.
 */
export class Autoscaler {
  private readonly computes = new Map<string, Followed>();
  private timer: NodeJS.Timeout | undefined;
  /** CPU time this process spent sampling (µs), for the bench and the metrics. */
  sampleCpuUs = 0;
  samples = 0;
  /** Told the CPU time (µs) of each sampling round. */
  onTick: ((cpuUs: number) => void) | undefined;

  constructor(private readonly opts: {
    cgroups: ComputeCgroups;
    quietMs: number;
    log: Logger;
    onChange?: (change: SizeChange) => void;
  }) {}

  /** A compute started at its floor. */
  follow(target: ScalerTarget, range: CuRange): number {
    this.computes.set(target.branchId, { target, range, cu: range.minCu, busyAt: Date.now(), applying: false });
    this.opts.onChange?.({ branchId: target.branchId, databaseId: target.databaseId, from: 0, to: range.minCu, reason: 'start' });
    return range.minCu;
  }

  /** A compute stopped. */
  forget(branchId: string): void {
    const c = this.computes.get(branchId);
    if (!c) return;
    this.computes.delete(branchId);
    this.opts.onChange?.({ branchId, databaseId: c.target.databaseId, from: c.cu, to: 0, reason: 'stop' });
  }

  /** The size the compute holds now (undefined: not running here). */
  sizeOf(branchId: string): number | undefined {
    return this.computes.get(branchId)?.cu;
  }

  rangeOf(branchId: string): CuRange | undefined {
    return this.computes.get(branchId)?.range;
  }

  /** A new range (a PATCH): the size moves into it at once. */
  async setRange(branchId: string, range: CuRange): Promise<void> {
    const c = this.computes.get(branchId);
    if (!c) return;
    c.range = range;
    const cu = Math.min(range.maxCu, Math.max(range.minCu, c.cu));
    await this.move(c, cu, 'range', true);
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), SCALER_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One sampling round over every running compute (synchronous reads; changes applied in the background). */
  tick(now = Date.now()): void {
    const before = process.cpuUsage();
    for (const c of this.computes.values()) {
      if (c.applying) continue;
      const counters = readCounters(this.opts.cgroups, c.target.branchId, c.last?.counters, c.cu * CU_MEMORY_BYTES);
      if (!counters) continue;
      const next = nextSize(c, counters, now, this.opts.quietMs);
      if (next && next.cu !== c.cu) void this.move(c, next.cu, next.reason);
    }
    const used = process.cpuUsage(before);
    this.sampleCpuUs += used.user + used.system;
    this.samples += this.computes.size;
    this.onTick?.(used.user + used.system);
  }

  private async move(c: Followed, cu: number, reason: ScaleReason, force = false): Promise<void> {
    if (cu === c.cu && !force) return;
    const from = c.cu;
    c.applying = true;
    try {
      await c.target.apply(cu, c.range);
      c.cu = cu;
      if (from !== cu) {
        this.opts.log.info({ branch: c.target.branchId, database: c.target.databaseId, from_cu: from, to_cu: cu, reason }, `compute scaled ${cu > from ? 'up' : 'down'}`);
        this.opts.onChange?.({ branchId: c.target.branchId, databaseId: c.target.databaseId, from, to: cu, reason });
      }
    } catch (err) {
      this.opts.log.warn({ branch: c.target.branchId, from_cu: from, to_cu: cu, err: String(err) }, 'could not resize the compute');
    } finally {
      c.applying = false;
    }
  }
}
