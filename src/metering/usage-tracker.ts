import type { CuRange } from '../autoscaling.ts';
import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.ts';
import type { BranchRoute } from '../catalog/routes.ts';
import type { ComputeManager } from '../computes.ts';
import type { ComputeTarget } from '../compute-target.ts';
import { type Coordinator, INVALIDATE } from '../coord/coordinator.ts';
import { QuotaError } from '../errors.ts';
import { CONNECTION_QUOTAS, PERIOD_QUOTAS, type Quotas } from '../quotas.ts';
import { nextMonth, splitByHour } from './hours.ts';
import { UsageLedger } from './ledger.ts';
import type { UsageMetric, UsageOwner } from './metrics.ts';
import { MonthTotalsCache } from './month-totals.ts';
import { type UsageStanding, brokenQuota, connectionsOver } from './quota-check.ts';
import type { QuotaEvents } from './quota-events.ts';

/** A client session as the proxy counts it; the tracker reads the byte counters. */
export interface MeteredSession extends UsageOwner {
  bytesToClient: number;
  bytesFromClient: number;
}

interface Span {
  owner: UsageOwner;
  since: number;
}

/** How often running computes are accrued and checked against their quotas. */
const TICK_MS = 1000;
/** A used-up storage quota is remembered this long (storage can shrink); period quotas until the month ends. */
const STORAGE_FLAG_MS = 60_000;
/** The coordinator's key of a database's sessions, summed over gateways and workers. */
export const sessionsKey = (databaseId: string) => `sessions:${databaseId}`;
const quotaFlagKey = (databaseId: string) => `quota:${databaseId}`;

/**
 * Turns what happens (computes running, sessions open, bytes relayed, WAL written) into usage in
 * the ledger, flushes it to the catalog every flush interval, and holds quotas: check() before a
 * connection, and running computes suspended once a time or transfer quota is used up.
 */
export class UsageTracker {
  readonly ledger = new UsageLedger();
  private readonly running = new Map<string, Span>();
  private readonly active = new Map<string, Span>();
  private readonly sessions = new Map<MeteredSession, { toClient: number; fromClient: number }>();
  private readonly lastWal = new Map<string, number>();
  /** Month-to-date totals read from the catalog and kept current by each flush. */
  private readonly months: MonthTotalsCache;
  /** Quotas of running databases, as last read from the catalog. */
  private readonly quotas = new Map<string, Quotas>();
  /** Counts quota changes heard, so that a read they overtake is made again rather than kept. */
  private quotaChanges = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Flushes and month-total loads run one at a time, so a flushed value is never counted twice. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Sessions this gateway relays, per database (its share of the fleet-wide count). */
  private readonly admitted = new Map<string, number>();

  constructor(
    private readonly catalog: Catalog,
    private readonly computes: ComputeManager,
    private readonly coord: Coordinator,
    private readonly opts: {
      flushSeconds: number;
      log: Logger;
      /** The range of a compute whose database names none: its floor is the size counted when no other is known. */
      defaultAutoscaling: CuRange;
      /** The size a compute holds now, where this node scales it (compute unit time = size × running time). */
      sizeOf?: (target: ComputeTarget) => number | undefined;
      /** Told each standing checked against quotas (80% and 100% become events). */
      quotaEvents?: QuotaEvents;
    },
  ) {
    this.months = new MonthTotalsCache(catalog, this.serially.bind(this));
    // Other gateways' flushes make the month totals known here stale; their quota changes hold here too.
    coord.subscribe(INVALIDATE, (m) => {
      if (m.type === 'usage' && m.from !== coord.gatewayId) for (const id of m.databases as string[]) this.months.forget(id);
      if (m.type === 'quotas') this.quotasChanged(m.databaseId as string, m.quotas as Quotas);
    });
    coord.onReconnect(() => this.months.forgetAll());
    computes.on('state', (branchId: string, state: string) => this.onState(branchId, state));
    computes.on('connections', (branchId: string, n: number) => this.onConnections(branchId, n));
    computes.addStopHook((target) => this.sample(target));
    // A stop stores its last WAL and maybe a base backup: storage is what the store holds after it.
    computes.addStoppedHook((target) => this.sample(target));
    this.timers.push(setInterval(() => this.tick(), TICK_MS), setInterval(() => void this.collect().catch(() => {}), opts.flushSeconds * 1000));
    for (const t of this.timers) t.unref();
  }

  private ownerOf(branchId: string): UsageOwner | undefined {
    const target = this.computes.targetOf(branchId);
    return target && { partnerId: target.partnerId, databaseId: target.ref.databaseId, branchId };
  }

  private onState(branchId: string, state: string): void {
    if (state === 'running') {
      const owner = this.ownerOf(branchId);
      if (owner) this.running.set(branchId, { owner, since: Date.now() });
      // Active time counts only while the compute runs, not while connections wait for it.
      if (owner && this.computes.info(branchId).connections > 0) this.active.set(branchId, { owner, since: Date.now() });
      if (owner) void this.readQuotas(owner.databaseId).catch(() => {});
    } else {
      const span = this.running.get(branchId);
      this.close(this.running, branchId, 'compute_time_ms');
      this.close(this.active, branchId, 'active_time_ms');
      this.lastWal.delete(branchId);
      // The last stretch of running time may cross 80% or 100% after the last tick saw it.
      if (span) void this.noteQuotaLevels(span.owner).catch(() => {});
    }
  }

  private async noteQuotaLevels(owner: UsageOwner): Promise<void> {
    const quotas = this.quotas.get(owner.databaseId);
    if (quotas && this.opts.quotaEvents) this.opts.quotaEvents.note(owner, quotas, await this.standing(owner.databaseId));
  }

  private onConnections(branchId: string, n: number): void {
    const owner = this.ownerOf(branchId);
    if (!owner) return;
    this.ledger.record(owner, 'connections_peak', n);
    if (n > 0 && !this.active.has(branchId) && this.running.has(branchId)) this.active.set(branchId, { owner, since: Date.now() });
    if (n === 0) this.close(this.active, branchId, 'active_time_ms');
  }

  /** Whether pgfleet meters this metric of the branch, or its provider does (Neon's consumption API). */
  private meters(branchId: string, metric: UsageMetric): boolean {
    return !(this.computes.targetOf(branchId)?.provider.meters as readonly string[] | undefined)?.includes(metric);
  }

  /** Accrues a span up to now, split at hour boundaries. */
  private accrue(span: Span, metric: UsageMetric, now = Date.now()): void {
    if (this.meters(span.owner.branchId, metric)) {
      const target = this.computes.targetOf(span.owner.branchId);
      const units = (target && this.opts.sizeOf?.(target)) ?? (target?.ref.autoscaling ?? this.opts.defaultAutoscaling).minCu;
      for (const [bucket, ms] of splitByHour(span.since, now)) {
        this.ledger.record(span.owner, metric, ms, bucket);
        if (metric === 'compute_time_ms') this.ledger.record(span.owner, 'compute_unit_ms', ms * units, bucket);
      }
    }
    span.since = now;
  }

  private close(spans: Map<string, Span>, branchId: string, metric: UsageMetric): void {
    const span = spans.get(branchId);
    if (!span) return;
    this.accrue(span, metric);
    spans.delete(branchId);
  }

  openSession(session: MeteredSession): void {
    this.sessions.set(session, { toClient: 0, fromClient: 0 });
    this.ledger.record(session, 'connections', 1);
  }

  closeSession(session: MeteredSession): void {
    this.accrueBytes(session);
    this.sessions.delete(session);
    if (this.coord.shared) void this.flagUsedUp([session.databaseId]).catch(() => {});
  }

  /**
   * In a fleet, a session relayed here may use up a quota of a compute that runs on another node:
   * what this gateway counted (flushed or not) is checked, and a used-up quota is flagged for every
   * gateway at once. The owning node suspends the compute when it sees it.
   */
  private async flagUsedUp(databaseIds: Iterable<string>): Promise<void> {
    for (const databaseId of new Set(databaseIds)) {
      const quotas = this.quotas.get(databaseId);
      if (!quotas || PERIOD_QUOTAS.every((q) => quotas[q] == null)) continue;
      const broken = brokenQuota(quotas, await this.standing(databaseId), PERIOD_QUOTAS);
      if (broken) await this.usedUp(databaseId, broken);
    }
  }

  private accrueBytes(session: MeteredSession): void {
    const seen = this.sessions.get(session);
    if (!seen) return;
    if (session.bytesToClient > seen.toClient) this.ledger.record(session, 'data_transfer_bytes', session.bytesToClient - seen.toClient);
    if (session.bytesFromClient > seen.fromClient) this.ledger.record(session, 'ingress_bytes', session.bytesFromClient - seen.fromClient);
    seen.toClient = session.bytesToClient;
    seen.fromClient = session.bytesFromClient;
  }

  /** WAL written since the last sample, and the current storage size. */
  private async sample(target: ComputeTarget): Promise<void> {
    const owner = { partnerId: target.partnerId, databaseId: target.ref.databaseId, branchId: target.ref.branchId };
    const s = await target.provider.sample(target.ref);
    if (s.storageBytes !== undefined) this.ledger.record(owner, 'storage_bytes', s.storageBytes);
    if (s.walBytes === undefined) return;
    const last = this.lastWal.get(owner.branchId) ?? s.walBytesAtStart;
    if (last !== undefined && s.walBytes > last) this.ledger.record(owner, 'written_data_bytes', s.walBytes - last);
    this.lastWal.set(owner.branchId, s.walBytes);
  }

  /** Brings every open span and session up to now, then suspends running computes over a quota. */
  private tick(): void {
    const now = Date.now();
    for (const span of this.running.values()) this.accrue(span, 'compute_time_ms', now);
    for (const span of this.active.values()) this.accrue(span, 'active_time_ms', now);
    for (const session of this.sessions.keys()) this.accrueBytes(session);
    void this.enforceOnRunning().catch((err) => this.opts.log.warn({ err: String(err) }, 'quota enforcement failed'));
    if (this.coord.shared && this.sessions.size) {
      void this.flagUsedUp([...this.sessions.keys()].map((s) => s.databaseId)).catch(() => {});
    }
  }

  private async enforceOnRunning(): Promise<void> {
    for (const [branchId, span] of this.running) {
      const quotas = this.quotas.get(span.owner.databaseId);
      if (!quotas) continue;
      const running = ['compute_time_seconds', 'compute_unit_seconds', 'data_transfer_bytes'] as const;
      const flagged = this.coord.shared ? await this.flagged(span.owner.databaseId, quotas) : undefined;
      const standing = await this.standing(span.owner.databaseId);
      this.opts.quotaEvents?.note(span.owner, quotas, standing);
      const broken = flagged && running.some((q) => q === flagged.quota?.name) ? flagged : brokenQuota(quotas, standing, running);
      if (!broken || !this.running.has(branchId)) continue;
      this.opts.log.info({ database: span.owner.databaseId, branch: branchId, reason: broken.message }, 'suspending compute over quota');
      await this.usedUp(span.owner.databaseId, broken);
      await this.computes.suspend(branchId, broken);
    }
  }

  /** A PATCH changed a database's quotas (these are the effective ones): they hold from now on. */
  quotasChanged(databaseId: string, quotas: Quotas): void {
    this.quotaChanges++;
    if (this.quotas.has(databaseId)) this.quotas.set(databaseId, quotas);
  }

  private async readQuotas(databaseId: string): Promise<void> {
    for (;;) {
      const changesBefore = this.quotaChanges;
      const { rows } = await this.catalog.query(
        'SELECT p.default_quotas || d.quotas AS quotas FROM databases d JOIN partners p ON p.id = d.partner_id WHERE d.id = $1',
        [databaseId],
      );
      // A change heard meanwhile may be newer than what was read: the catalog holds it by now.
      if (changesBefore !== this.quotaChanges) continue;
      const quotas = rows[0]?.quotas as Quotas | undefined;
      if (quotas) this.quotas.set(databaseId, quotas);
      return;
    }
  }

  /** Flushed month-to-date totals plus what is still pending. */
  private async standing(databaseId: string): Promise<UsageStanding> {
    const month = await this.months.get(databaseId);
    const pending = this.ledger.pendingSums(databaseId, month.month);
    const monthToDate: Partial<Record<UsageMetric, number>> = { ...month.sums };
    for (const [metric, value] of Object.entries(pending) as [UsageMetric, number][]) monthToDate[metric] = (monthToDate[metric] ?? 0) + value;
    const storage = new Map([...month.storage, ...this.ledger.latest(databaseId, 'storage_bytes')]);
    const storageBytes = [...storage.values()].reduce((sum, v) => sum + v, 0);
    return { monthToDate, storageBytes };
  }

  /**
   * The quota a new connection to this branch would break, if any (call before acquiring the
   * compute). A quota another gateway found used up counts at once, while its limit is unchanged.
   */
  async check(route: BranchRoute): Promise<QuotaError | undefined> {
    this.quotas.set(route.databaseId, route.quotas);
    if (Object.entries(route.quotas).every(([name, limit]) => limit === null || limit === undefined || (CONNECTION_QUOTAS as readonly string[]).includes(name))) return undefined;
    const flagged = await this.flagged(route.databaseId, route.quotas);
    if (flagged) return flagged;
    const standing = await this.standing(route.databaseId);
    this.opts.quotaEvents?.note(route, route.quotas, standing);
    const broken = brokenQuota(route.quotas, standing);
    if (broken) await this.usedUp(route.databaseId, broken);
    return broken;
  }

  /** A quota some gateway found used up, while its limit is still the one it found used up. */
  private async flagged(databaseId: string, quotas: Quotas): Promise<QuotaError | undefined> {
    const raw = await this.coord.getFlag(quotaFlagKey(databaseId));
    if (!raw) return undefined;
    const f = JSON.parse(raw) as { name: string; limit: number; message: string; sqlstate: string };
    return quotas[f.name as keyof Quotas] === f.limit ? new QuotaError(f.message, f.sqlstate, { name: f.name, limit: f.limit }) : undefined;
  }

  /** Tells every gateway that a quota of the database is used up (not the connection quotas: those come and go). */
  private async usedUp(databaseId: string, broken: QuotaError): Promise<void> {
    if (!broken.quota || (CONNECTION_QUOTAS as readonly string[]).includes(broken.quota.name)) return;
    const ttl = broken.quota.name === 'storage_bytes' ? STORAGE_FLAG_MS : Math.max(1000, nextMonth(Date.now()) - Date.now());
    const flag = { ...broken.quota, message: broken.message, sqlstate: broken.sqlstate };
    await this.coord.setFlag(quotaFlagKey(databaseId), JSON.stringify(flag), ttl);
  }

  /**
   * Counts a session of the database from now (after check() and before the compute is acquired,
   * so that sessions waiting for a wake count), or throws 53300 when that is one over its
   * connection quotas (counted across the fleet; `defaultClientCap` where max_client_connections
   * is unset); leave() ends the count. Counted first, checked after: sessions arriving together
   * cannot all slip under the cap. Nothing per session is kept here but the count: idle sessions are many.
   */
  async admit(route: BranchRoute, defaultClientCap: number): Promise<void> {
    this.countAdmitted(route.databaseId, 1);
    try {
      const over = connectionsOver(route.quotas, await this.coord.total(sessionsKey(route.databaseId)), defaultClientCap);
      if (over) throw over;
    } catch (err) {
      this.countAdmitted(route.databaseId, -1);
      throw err;
    }
  }

  /** Ends one admitted session's count (once per admit that did not throw). */
  leave(databaseId: string): void {
    this.countAdmitted(databaseId, -1);
  }

  private countAdmitted(databaseId: string, delta: number): void {
    const n = (this.admitted.get(databaseId) ?? 0) + delta;
    if (n === 0) this.admitted.delete(databaseId);
    else this.admitted.set(databaseId, n);
    void this.coord.setShare(sessionsKey(databaseId), n);
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * What each flush interval does: sample WAL and storage of every running compute (stopped ones
   * are sampled as they stop), then flush.
   */
  async collect(): Promise<void> {
    await Promise.all(this.computes.runningBranches().map(async (branchId) => {
      const target = this.computes.targetOf(branchId);
      if (target) await this.sample(target).catch((err) => this.opts.log.warn({ err: String(err), branch: branchId }, 'usage sample failed'));
    }));
    await this.flush();
  }

  /** Writes pending usage to the catalog and folds it into the cached month totals (no sampling: cheap to call per report). */
  flush(): Promise<void> {
    return this.serially(async () => {
      let written;
      try {
        written = await this.ledger.flush(this.catalog);
      } catch (err) {
        this.opts.log.warn({ err: String(err) }, 'usage flush failed; will retry');
        throw err;
      }
      if (written.length && this.coord.shared) {
        const databases = [...new Set(written.map((row) => row.owner.databaseId))];
        void this.coord.publish(INVALIDATE, { type: 'usage', from: this.coord.gatewayId, databases });
      }
      this.months.fold(written);
    });
  }

  /** Accrues everything up to now and flushes (graceful stop). */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    const now = Date.now();
    for (const span of this.running.values()) this.accrue(span, 'compute_time_ms', now);
    for (const span of this.active.values()) this.accrue(span, 'active_time_ms', now);
    for (const session of this.sessions.keys()) this.accrueBytes(session);
    await this.flush();
  }
}
