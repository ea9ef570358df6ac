/**
 * Warm backends of direct (not `-pooler`) endpoints, as PgBouncer's session pooling keeps server
 * connections: a client that says goodbye with its backend idle leaves it behind; the backend is
 * reset (proxy/session-reset.ts) and handed to the next client of the same branch, role, database
 * and startup parameters, who then skips the compute's fork and authentication. That client gets
 * the startup answer a new backend would give: its ParameterStatus values, its notices, and a
 * cancel key of its own that reaches this backend.
 *
 * Only backends of a compute on this node's socket are kept (one reached through another node or
 * over TCP would hold the link or wake the provider). A kept backend holds no lease: the compute
 * suspends when its last client leaves, as without them; kept ones are closed when it stops (or
 * is held for a restore or reset), when the database's routes change (a password reset among
 * them), after PGFLEET_WARM_BACKEND_IDLE_TIMEOUT, and beyond PGFLEET_WARM_BACKENDS per compute.
 * A backend whose reset fails, or that sends anything while kept, is closed.
 */
import type { BranchRoute } from '../src/catalog/routes.ts';
import type { WarmBackendSettings } from '../src/config.ts';
import type { ProxyCore } from '../src/gateway.ts';
import type { ComputeAddress } from '../src/providers/provider.ts';
import type { BackendSession } from './backend.ts';
import type { CancelKey, CancelRoute, CancelTarget } from './cancel.ts';
import { TERMINATE, backendKeyData, readyForQuery } from './protocol/messages.ts';
import { Interner } from './interner.ts';
import { PacketReader } from './protocol/packet-reader.ts';
import { MSG, TX_IDLE } from './protocol/codes.ts';
import { framesOfType } from './protocol/server-parameters.ts';
import { resetSession, startupUnchanged } from './session-reset.ts';

/** Time a reset or a probe may take before the backend is given up. */
const EXCHANGE_TIMEOUT_MS = 5000;
/** How a backend's startup answer ends: ReadyForQuery, idle (made once, not per client). */
const READY_IDLE = readyForQuery(TX_IDLE);
// Frontend Terminate: a kept backend closed says goodbye as a client would.

/** The backend of one direct session, which may outlive its client. */
export class DirectBackend implements CancelRoute {
  /** Served a client before (its startup answer is made up, not the compute's own). */
  reused = false;
  private cancelsInFlight = 0;
  private cancelsSettled: (() => void)[] | undefined;

  constructor(
    readonly session: BackendSession,
    /** The compute run it belongs to (a restarted compute has a new address object). */
    readonly address: ComputeAddress,
    readonly branchId: string,
    readonly databaseId: string,
    /** Which clients it can serve: branch, role, database and startup parameters. */
    readonly key: string,
  ) {}

  get socket() {
    return this.session.socket;
  }

  /** What the compute sent right behind its startup answer (normally nothing), for its first client only. */
  takeRest(): Buffer | undefined {
    const rest = this.session.rest;
    this.session.rest = undefined;
    return rest;
  }

  /** What its client is told at startup, BackendKeyData with the client's key (this backend's pid, a secret of its own). */
  startupAnswer(key: CancelKey): Buffer {
    const keyData = backendKeyData(key.pid, key.secret);
    if (!this.reused) return Buffer.concat([this.session.greeting, keyData, READY_IDLE]);
    return Buffer.concat([framesOfType(this.session.greeting, MSG.notice), ...this.session.parameters.frames(), keyData, READY_IDLE]);
  }

  /** Where a cancel of its client goes; the backend is not reset before every cancel is delivered. */
  cancelTarget(): CancelTarget {
    this.cancelsInFlight++;
    return {
      address: this.address, backendPid: this.session.pid, backendSecret: this.session.secret,
      settled: () => {
        if (--this.cancelsInFlight > 0 || !this.cancelsSettled) return;
        const waiting = this.cancelsSettled;
        this.cancelsSettled = undefined;
        for (const settled of waiting) settled();
      },
    };
  }

  /** Resolves once no cancel is on its way to the backend. */
  cancelsDone(): Promise<void> {
    return this.cancelsInFlight === 0 ? Promise.resolve() : new Promise((resolve) => (this.cancelsSettled ??= []).push(resolve));
  }

  /** Says goodbye to the compute and closes. */
  close(): void {
    if (!this.socket.destroyed) this.socket.end(TERMINATE);
  }
}

interface Kept {
  backend: DirectBackend;
  since: number;
  /** Stops watching the idle socket. */
  unwatch: () => void;
}

export class WarmBackends {
  /** Keys made lately, each kept once: every session of one startup holds the same string. */
  private readonly keys = new Interner<string>(4096);
  /** Kept backends by key, the most recently kept last. */
  private readonly kept = new Map<string, Kept[]>();
  /** Kept or being reset, per branch (the cap counts both). */
  private readonly perBranch = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private readonly onState = (branchId: string, state: string) => {
    if (state !== 'running') this.dropBranch(branchId);
  };
  private readonly onTerminate = (branchId: string) => this.dropBranch(branchId);
  private readonly onRoutes = (databaseId: string | undefined) => this.drop((b) => databaseId === undefined || b.databaseId === databaseId);

  constructor(private readonly core: ProxyCore, private readonly settings: WarmBackendSettings) {
    core.computes.on('state', this.onState);
    core.computes.on('terminate', this.onTerminate);
    core.routes.on('changed', this.onRoutes);
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.min(5000, settings.idleTimeoutMs / 2)));
    this.sweeper.unref();
  }

  /** Which clients a backend of these startup parameters can serve. */
  keyOf(route: BranchRoute, params: Map<string, string>): string {
    const key = JSON.stringify([route.branchId, ...[...params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
    return this.keys.intern(key, key);
  }

  /** Whether a backend on this compute address may be kept at all (and so needs its settings probed at start). */
  keeps(address: ComputeAddress): boolean {
    return this.settings.maxPerCompute > 0 && address.kind === 'unix';
  }

  /** Backends kept now, ready for a client: all, or of one branch. */
  keptCount(branchId?: string): number {
    let n = 0;
    for (const list of this.kept.values()) for (const entry of list) if (branchId === undefined || entry.backend.branchId === branchId) n++;
    return n;
  }

  /** Whether a backend for this key is kept now. */
  has(key: string): boolean {
    return this.kept.has(key);
  }

  /**
   * A kept backend for this key, once it answered STARTUP_PROBE as it did at its start (one
   * round trip); undefined when none is kept or the one kept no longer would be (it is closed).
   */
  async take(key: string): Promise<DirectBackend | undefined> {
    const list = this.kept.get(key);
    const entry = list?.pop();
    if (!entry) return undefined;
    if (list!.length === 0) this.kept.delete(key);
    this.tally(entry.backend.branchId, -1);
    entry.unwatch();
    const { backend } = entry;
    const fit = await this.exchange(backend, (reader) => startupUnchanged(backend.socket, reader, backend.session.startupFingerprint!, backend.session.parameters));
    if (!fit) {
      backend.close();
      return undefined;
    }
    backend.reused = true;
    return backend;
  }

  /**
   * A backend its client left idle: reset and kept, or closed when it may not be kept. Cancels of
   * the client that are still on their way are delivered first, so none reaches the next client.
   */
  give(backend: DirectBackend): void {
    const n = this.perBranch.get(backend.branchId) ?? 0;
    if (this.closed || !this.keeps(backend.address) || backend.session.startupFingerprint === undefined || n >= this.settings.maxPerCompute || this.core.computes.runningAddress(backend.branchId) !== backend.address) {
      backend.close();
      return;
    }
    this.tally(backend.branchId, 1);
    void this.reset(backend).then((ok) => {
      // Dropped meanwhile (its compute stopped, its routes changed): the count went with it.
      if (!this.resetting.delete(backend)) return;
      if (!ok || this.core.computes.runningAddress(backend.branchId) !== backend.address) {
        this.tally(backend.branchId, -1);
        backend.socket.destroy();
        return;
      }
      this.keep(backend);
    });
  }

  /** Backends being reset (not yet kept), so that a drop reaches them too. */
  private readonly resetting = new Set<DirectBackend>();

  private async reset(backend: DirectBackend): Promise<boolean> {
    this.resetting.add(backend);
    await backend.cancelsDone();
    return this.exchange(backend, (reader) => resetSession(backend.socket, reader, backend.session.parameters));
  }

  /** One exchange with a backend outside any session, bounded in time; false when it failed. */
  private async exchange(backend: DirectBackend, run: (reader: PacketReader) => Promise<boolean>): Promise<boolean> {
    const timer = setTimeout(() => backend.socket.destroy(), EXCHANGE_TIMEOUT_MS);
    const reader = new PacketReader(backend.socket);
    try {
      return await run(reader);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
      reader.detach();
    }
  }

  private keep(backend: DirectBackend): void {
    const { socket } = backend;
    // Anything from a kept backend (a FATAL as its compute stops, a setting reloaded) or its end: it goes.
    const gone = () => this.drop((b) => b === backend);
    socket.on('data', gone);
    socket.on('close', gone);
    socket.resume();
    const unwatch = () => {
      socket.off('data', gone);
      socket.off('close', gone);
      socket.pause();
    };
    const list = this.kept.get(backend.key) ?? [];
    list.push({ backend, since: Date.now(), unwatch });
    this.kept.set(backend.key, list);
  }

  private tally(branchId: string, delta: number): void {
    const n = (this.perBranch.get(branchId) ?? 0) + delta;
    if (n > 0) this.perBranch.set(branchId, n);
    else this.perBranch.delete(branchId);
  }

  /** Closes every kept (and resetting) backend `which` selects. */
  private drop(which: (b: DirectBackend) => boolean): number {
    let dropped = 0;
    for (const [key, list] of this.kept) {
      const stay = list.filter((entry) => {
        if (!which(entry.backend)) return true;
        entry.unwatch();
        entry.backend.close();
        this.tally(entry.backend.branchId, -1);
        dropped++;
        return false;
      });
      if (stay.length > 0) this.kept.set(key, stay);
      else this.kept.delete(key);
    }
    for (const backend of this.resetting) {
      if (!which(backend)) continue;
      this.resetting.delete(backend);
      backend.socket.destroy();
      this.tally(backend.branchId, -1);
      dropped++;
    }
    return dropped;
  }

  /** Closes the branch's kept backends (its compute is full, stops, or is held); how many went. */
  dropBranch(branchId: string): number {
    return this.drop((b) => b.branchId === branchId);
  }

  private sweep(): void {
    const cutoff = Date.now() - this.settings.idleTimeoutMs;
    for (const [key, list] of this.kept) {
      const old = new Set(list.filter((entry) => entry.since <= cutoff).map((entry) => entry.backend));
      if (old.size > 0) this.drop((b) => b.key === key && old.has(b));
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.core.computes.off('state', this.onState);
    this.core.computes.off('terminate', this.onTerminate);
    this.core.routes.off('changed', this.onRoutes);
    this.drop(() => true);
  }
}
