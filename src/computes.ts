import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type ComputeStartOptions, startCompute } from './compute-start.ts';
import { type ComputeInfo, type ComputeState, type ComputeTarget, HeldLease, type Lease, type SuspendCause, type WakeCause } from './compute-target.ts';
import { CapacityError, ComputeStartError, PgfleetError } from './errors.ts';
import type { ComputeAddress } from './providers/provider.ts';

interface Entry {
  target: ComputeTarget;
  state: ComputeState;
  address: ComputeAddress | undefined;
  starting: Promise<ComputeAddress> | undefined;
  /** Settles when the last start attempt (even one we gave up waiting for) is cleaned up. */
  settled: Promise<void>;
  stopping: Promise<void> | undefined;
  connections: number;
  lastActiveAt: number | undefined;
  startedAt: number | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  failures: number;
  retryAt: number;
  /** Settles when a restore, reset or copy of the branch's files ends; wakes wait for it. */
  held: Promise<void> | undefined;
}

export interface ComputeManagerOptions extends ComputeStartOptions {
  maxComputes: number;
  log: Logger;
}

/**
 * Owns each compute's state: suspended → starting → running → stopping. Wakes are coalesced
 * (one start, however many connections wait), idle computes are suspended after their
 * timeout, and at most maxComputes run at once, the least recently used idle one making room.
 *
 * Events: 'state' (branchId, state, previous), 'wake' (branchId, ms, ok, error?), 'connections' (branchId, n),
 * 'terminate' (branchId, error, scope?: TerminateScope): sessions of that compute (only those of scope.backendPids, when given) must end with this error;
 * 'woken' (branchId, {ms, cause}) and 'suspended' (branchId, {cause, ranMs, stopMs}), each also logged with its cause.
 */
export class ComputeManager extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly stopHooks: ((target: ComputeTarget) => Promise<void>)[] = [];
  private readonly stoppedHooks: ((target: ComputeTarget) => Promise<void>)[] = [];
  private closed = false;

  constructor(private readonly opts: ComputeManagerOptions) {
    super();
  }

  private entry(target: ComputeTarget): Entry {
    let e = this.entries.get(target.ref.branchId);
    if (!e) {
      e = {
        target, state: 'suspended', address: undefined, starting: undefined, settled: Promise.resolve(),
        stopping: undefined, connections: 0, lastActiveAt: undefined, startedAt: undefined,
        idleTimer: undefined, failures: 0, retryAt: 0, held: undefined,
      };
      this.entries.set(target.ref.branchId, e);
    } else {
      e.target = target; // newer settings (suspend timeout, roles) win
    }
    return e;
  }

  private setState(e: Entry, state: ComputeState): void {
    const previous = e.state;
    if (previous === state) return;
    e.state = state;
    this.emit('state', e.target.ref.branchId, state, previous);
  }

  /** Wakes the compute if needed and counts one more connection on it. */
  async acquire(target: ComputeTarget): Promise<Lease> {
    const e = this.entry(target);
    // Count the connection before waiting so that the compute is not evicted or suspended meanwhile.
    this.addConnection(e, 1);
    try {
      return new HeldLease(await this.wakeEntry(e, 'connection'), this.leaseEnded, e);
    } catch (err) {
      this.leaseEnded(e);
      throw err;
    }
  }

  private readonly leaseEnded = (e: Entry): void => this.addConnection(e, -1);

  /** Starts the compute (API wake, or a connection through acquire) and returns its address. */
  async wake(target: ComputeTarget, cause: WakeCause = 'api'): Promise<ComputeAddress> {
    const e = this.entry(target);
    const address = await this.wakeEntry(e, cause);
    this.armIdleTimer(e);
    return address;
  }

  /** Runs before each stop of a running compute (usage takes its last sample); failures are logged. */
  addStopHook(hook: (target: ComputeTarget) => Promise<void>): void {
    this.stopHooks.push(hook);
  }

  /** Runs after each stop of a running compute, before the stop is done; failures are logged. */
  addStoppedHook(hook: (target: ComputeTarget) => Promise<void>): void {
    this.stoppedHooks.push(hook);
  }

  /** The target of a compute the manager knows. */
  targetOf(branchId: string): ComputeTarget | undefined {
    return this.entries.get(branchId)?.target;
  }

  /** The address of a running compute (for a cancel: never starts one). */
  runningAddress(branchId: string): ComputeAddress | undefined {
    const e = this.entries.get(branchId);
    return e?.state === 'running' ? e.address : undefined;
  }

  /** Branches whose compute is running. */
  runningBranches(): string[] {
    return [...this.entries.values()].filter((e) => e.state === 'running').map((e) => e.target.ref.branchId);
  }

  /** New settings for a compute the manager knows (a changed suspend timeout takes effect now). */
  retarget(target: ComputeTarget): void {
    const e = this.entries.get(target.ref.branchId);
    if (!e) return;
    e.target = target;
    this.armIdleTimer(e);
  }

  private addConnection(e: Entry, delta: number): void {
    e.connections += delta;
    e.lastActiveAt = Date.now();
    this.emit('connections', e.target.ref.branchId, e.connections);
    if (e.connections > 0) {
      clearTimeout(e.idleTimer);
      e.idleTimer = undefined;
    } else {
      this.armIdleTimer(e);
    }
  }

  private armIdleTimer(e: Entry): void {
    clearTimeout(e.idleTimer);
    e.idleTimer = undefined;
    const seconds = e.target.suspendTimeoutSeconds;
    if (seconds <= 0 || e.connections > 0 || e.state !== 'running') return;
    e.idleTimer = setTimeout(() => {
      e.idleTimer = undefined;
      if (e.connections === 0 && e.state === 'running') {
        this.stopEntry(e, 'idle').catch((err) => this.opts.log.error({ err, branch: e.target.ref.branchId }, 'idle suspend failed'));
      }
    }, seconds * 1000);
    e.idleTimer.unref();
  }

  private wakeEntry(e: Entry, cause: WakeCause): Promise<ComputeAddress> {
    if (this.closed) return Promise.reject(new ComputeStartError('the gateway is shutting down'));
    if (e.target.unavailable) return Promise.reject(e.target.unavailable);
    if (e.held) return this.waitForHold(e).then(() => this.wakeEntry(e, cause));
    if (e.state === 'running' && e.address) return Promise.resolve(e.target.provider.addressFor?.(e.target.ref, e.address) ?? e.address);
    if (e.starting) return e.starting;
    if (e.stopping) {
      // A stop is under way (idle suspend, eviction): wake again once it is done.
      return e.stopping.then(() => this.wakeEntry(e, cause));
    }
    const now = Date.now();
    if (e.retryAt > now) {
      return Promise.reject(new ComputeStartError(
        `the database could not be started (${e.failures} failed attempts); the next attempt is in ${Math.ceil((e.retryAt - now) / 1000)} s`));
    }
    this.makeRoom(e);
    this.setState(e, 'starting');
    const started = Date.now();
    const starting = this.startWithTimeout(e).then(
      (address) => {
        e.starting = undefined;
        e.address = address;
        e.failures = 0;
        e.retryAt = 0;
        e.startedAt = Date.now();
        this.setState(e, 'running');
        const ms = Date.now() - started;
        this.emit('wake', e.target.ref.branchId, ms, true);
        this.opts.log.info({ database: e.target.ref.databaseId, branch: e.target.ref.branchId, cause, ms }, `compute woken (${cause === 'api' ? 'an API call' : 'a client connected'}) in ${ms} ms`);
        this.emit('woken', e.target.ref.branchId, { ms, cause });
        this.armIdleTimer(e);
        return address;
      },
      (err: Error) => {
        e.starting = undefined;
        e.failures++;
        // The first failure is retried by the next connection; repeated ones back off.
        e.retryAt = e.failures >= 2 ? Date.now() + Math.min(60_000, 1000 * 2 ** (e.failures - 2)) : 0;
        this.setState(e, 'failed');
        const ms = Date.now() - started;
        this.emit('wake', e.target.ref.branchId, ms, false, err.message);
        // An error pgfleet did not type is a bug: its stack goes to the log.
        const detail = err instanceof PgfleetError ? {} : { stack: err.stack };
        this.opts.log.error({ database: e.target.ref.databaseId, branch: e.target.ref.branchId, cause, ms, err: err.message, failures: e.failures, ...detail }, 'compute start failed');
        throw err instanceof ComputeStartError || err instanceof CapacityError
          ? err
          : new ComputeStartError(`the database could not be started: ${err.message}`);
      },
    );
    e.starting = starting;
    return starting;
  }

  /** Waits, like a wake, for a restore or reset to end: up to wakeTimeoutMs, then 57P03. */
  private waitForHold(e: Entry): Promise<void> {
    const held = e.held!;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new ComputeStartError(
        `the branch is being restored or copied and was not ready within ${Math.round(this.opts.wakeTimeoutMs / 1000)} s; try again shortly`)),
      this.opts.wakeTimeoutMs);
      void held.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Runs fn while e is held: no start begins (wakes wait) until fn ends. One holder at a time. */
  private async withHold<T>(e: Entry, fn: () => Promise<T>): Promise<T> {
    while (e.held) await e.held;
    let release!: () => void;
    e.held = new Promise((r) => (release = r));
    try {
      return await fn();
    } finally {
      e.held = undefined;
      release();
    }
  }

  /**
   * Stops the compute (its sessions end with `reason`) and keeps it stopped while fn rewrites its
   * files (a restore, a reset); connections meanwhile wait as for a wake.
   */
  hold<T>(target: ComputeTarget, reason: PgfleetError, fn: () => Promise<T>): Promise<T> {
    const e = this.entry(target);
    return this.withHold(e, async () => {
      await e.starting?.catch(() => {});
      if (e.state === 'running' || e.state === 'stopping') {
        this.emit('terminate', target.ref.branchId, reason);
        await this.stopEntry(e, reason.code);
      }
      return fn();
    });
  }

  /**
   * Runs fn while the compute's files may be read as they are (a branch copies them). A running
   * compute keeps running (fn is told, and must copy online) and is not suspended meanwhile; a
   * stopped one stays stopped until fn ends, connections waiting as for a wake.
   */
  async guard<T>(target: ComputeTarget, fn: (running: boolean) => Promise<T>): Promise<T> {
    const e = this.entry(target);
    while (e.held) await e.held;
    await e.starting?.catch(() => {});
    await e.stopping;
    if (e.state === 'running') {
      this.addConnection(e, 1);
      try {
        return await fn(true);
      } finally {
        this.addConnection(e, -1);
      }
    }
    return this.withHold(e, () => fn(false));
  }

  /** Starts the compute, giving up after wakeTimeoutMs; a start given up on is stopped once it settles. */
  private async startWithTimeout(e: Entry): Promise<ComputeAddress> {
    await e.settled; // a previous attempt still winding down
    return startCompute(e.target, this.opts, (settled) => (e.settled = settled));
  }

  /** Frees a slot for `e` when at capacity by stopping the least recently used idle compute. */
  private makeRoom(e: Entry): void {
    let active = 0;
    let victim: Entry | undefined;
    for (const other of this.entries.values()) {
      if (other.state !== 'starting' && other.state !== 'running') continue;
      active++;
      if (other === e || other.state !== 'running' || other.connections > 0) continue;
      if (!victim || (other.lastActiveAt ?? 0) < (victim.lastActiveAt ?? 0)) victim = other;
    }
    if (active < this.opts.maxComputes) return;
    if (!victim) {
      throw new CapacityError(`all ${this.opts.maxComputes} compute slots of this gateway are busy; try again shortly`);
    }
    void this.stopEntry(victim, 'room', { for: e.target.ref.branchId }).catch((err) => this.opts.log.error({ err }, 'eviction failed'));
  }

  private stopEntry(e: Entry, cause: SuspendCause, detail: Record<string, unknown> = {}): Promise<void> {
    if (e.stopping) return e.stopping;
    clearTimeout(e.idleTimer);
    e.idleTimer = undefined;
    const wasStarting = e.starting;
    const began = Date.now();
    const ranMs = e.startedAt === undefined ? 0 : began - e.startedAt;
    this.setState(e, 'stopping');
    const stopping = (async () => {
      if (wasStarting) await wasStarting.catch(() => {});
      const ran = e.target.provider.status(e.target.ref) === 'running';
      const hooks = async (list: ((target: ComputeTarget) => Promise<void>)[]) => {
        for (const hook of ran ? list : []) {
          await hook(e.target).catch((err) => this.opts.log.warn({ err: String(err), branch: e.target.ref.branchId }, 'stop hook failed'));
        }
      };
      await hooks(this.stopHooks);
      await e.target.provider.stop(e.target.ref);
      await hooks(this.stoppedHooks);
    })().finally(() => {
      e.stopping = undefined;
      e.address = undefined;
      e.startedAt = undefined;
      this.setState(e, 'suspended');
      this.stopped(e, cause, ranMs, Date.now() - began, detail);
    });
    e.stopping = stopping;
    return stopping;
  }

  /** Logs and tells a stop with its cause, how long the compute ran and how long the stop took. */
  private stopped(e: Entry, cause: SuspendCause, ranMs: number, stopMs: number, detail: Record<string, unknown>): void {
    const { databaseId, branchId } = e.target.ref;
    const why = cause === 'idle' ? `idle for ${e.target.suspendTimeoutSeconds} s` : cause === 'room' ? 'to make room for another compute' : cause;
    const line = { database: databaseId, branch: branchId, cause, ran_ms: ranMs, stop_ms: stopMs, ...detail };
    if (cause === 'exited') this.opts.log.warn(line, `compute exited by itself after running ${Math.round(ranMs / 1000)} s; the next connection starts it again`);
    else this.opts.log.info(line, `compute suspended (${why}) after running ${Math.round(ranMs / 1000)} s`);
    this.emit('suspended', branchId, { cause, ranMs, stopMs });
  }

  /**
   * Suspends now, whatever its connections. With a reason (an exhausted quota), sessions are first
   * told why through the 'terminate' event; otherwise they get Postgres's own shutdown error.
   */
  async suspend(branchId: string, reason?: PgfleetError): Promise<void> {
    const e = this.entries.get(branchId);
    if (!e || e.state === 'suspended' || e.state === 'failed') return;
    if (reason) this.emit('terminate', branchId, reason);
    await this.stopEntry(e, reason ? (reason.code === 'quota_exceeded' ? 'quota' : reason.code) : 'api');
  }

  /** The provider noticed the compute died: the next connection starts it again. */
  computeExited(branchId: string): void {
    const e = this.entries.get(branchId);
    if (!e || e.state !== 'running') return;
    const ranMs = e.startedAt === undefined ? 0 : Date.now() - e.startedAt;
    e.address = undefined;
    e.startedAt = undefined;
    clearTimeout(e.idleTimer);
    this.setState(e, 'suspended');
    this.stopped(e, 'exited', ranMs, 0, {});
  }

  /** Stops the compute and forgets it (the database is being deleted, so a failed stop only matters to the log). */
  async remove(branchId: string): Promise<void> {
    const e = this.entries.get(branchId);
    if (!e) return;
    await e.starting?.catch(() => {});
    await this.stopEntry(e, 'deleted').catch((err) => this.opts.log.warn({ branch: branchId, err: (err as Error).message }, 'stopping a deleted compute failed'));
    this.entries.delete(branchId);
  }

  info(branchId: string): ComputeInfo {
    const e = this.entries.get(branchId);
    return {
      state: e?.state ?? 'suspended',
      connections: e?.connections ?? 0,
      lastActiveAt: e?.lastActiveAt !== undefined ? new Date(e.lastActiveAt) : undefined,
      startedAt: e?.startedAt !== undefined ? new Date(e.startedAt) : undefined,
    };
  }

  /** How many computes are starting or running. */
  get activeCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.state === 'starting' || e.state === 'running') n++;
    return n;
  }

  /** Stops every compute (pgfleet shutting down). */
  async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.entries.values()].map(async (e) => {
      await e.starting?.catch(() => {});
      if (e.state === 'running' || e.state === 'stopping') await this.stopEntry(e, 'shutdown').catch(() => {});
    }));
  }
}
