/**
 * The backends of one (branch, role, database name): at most `size` of them, opened on demand
 * (waking the compute), reused most recently released first, closed after idling
 * PGFLEET_POOL_IDLE_TIMEOUT so that an unused compute can be suspended. Clients beyond the size
 * wait in order; after a few seconds they get a NOTICE, after PGFLEET_POOL_QUEUE_TIMEOUT 53300.
 */
import type { BranchRoute } from '../../src/catalog/routes.ts';
import type { PoolSettings } from '../../src/config.ts';
import { CapacityError } from '../../src/errors.ts';
import type { ProxyCore } from '../../src/gateway.ts';
import { connectBackend } from '../backend.ts';
import { errorResponse } from '../protocol/messages.ts';
import { PooledBackend } from './pooled-backend.ts';

/** A client waiting for a backend. */
export interface PoolWaiter {
  notice(message: Buffer): void;
}

interface Waiting {
  resolve(backend: PooledBackend): void;
  reject(err: Error): void;
  timers: NodeJS.Timeout[];
}

/** A queued client hears why it waits after this long (or half its timeout, when shorter). */
const NOTICE_AFTER_MS = 5000;
/** Another proxy worker holds every slot of this pool (src/workers/pool-slots.ts): wait as for a busy pool. */
const NO_SLOT = new Error('every slot of the pool is held by other workers');

export class BackendPool {
  /** Idle backends, the longest idle first. */
  private readonly idle: PooledBackend[] = [];
  private readonly waiting = new Map<PoolWaiter, Waiting>();
  /** Backends open or being opened. */
  private opened = 0;
  /** Backends closing that no longer count in `opened`. */
  private readonly retired = new WeakSet<PooledBackend>();
  private sweeper: NodeJS.Timeout | undefined;
  /** One log line per pool every few seconds, however many clients wait. */
  private loggedWaitAt = 0;
  /** What the compute reports at startup (server_version, …), for the proxy's own startup answer. */
  serverParams: [string, string][] | undefined;
  /** Connected clients; the pool is dropped when it has neither clients nor backends. */
  clients = 0;
  /** Another worker waits for a slot of this pool: the next backend that would idle closes instead. */
  private wanted = false;

  constructor(
    readonly key: string,
    public route: BranchRoute,
    readonly role: string,
    readonly database: string,
    private readonly core: ProxyCore,
    private readonly settings: PoolSettings,
    private readonly onEmpty: (pool: BackendPool) => void,
  ) {}

  get size(): number {
    return this.route.poolSize ?? this.settings.defaultSize;
  }

  get stats(): { open: number; idle: number; waiting: number } {
    return { open: this.opened, idle: this.idle.length, waiting: this.waiting.size };
  }

  /**
   * An idle backend, at once, if there is one (the common case: no promise, no pause): `preferred`
   * (the client's own last one, which needs no reset) when it is idle, else the last released.
   */
  takeIdle(preferred?: PooledBackend): PooledBackend | undefined {
    // The size was lowered: idle backends beyond it go first.
    while (this.opened > this.size && this.idle.length > 0) this.retire(this.idle.shift()!);
    const at = preferred ? this.idle.lastIndexOf(preferred) : -1;
    return at >= 0 ? this.idle.splice(at, 1)[0] : this.idle.pop();
  }

  /** A backend for `client`: an idle one, a new one while under the size, or the next one released. */
  acquire(client: PoolWaiter): Promise<PooledBackend> {
    const idle = this.takeIdle();
    if (idle) return Promise.resolve(idle);
    if (this.opened < this.size && this.waiting.size === 0) return this.open().catch((err) => (err === NO_SLOT ? this.wait(client) : Promise.reject(err)));
    return this.wait(client);
  }

  /** In line for the next backend released (or slot freed). */
  private wait(client: PoolWaiter): Promise<PooledBackend> {
    return new Promise((resolve, reject) => {
      const timeoutMs = this.settings.queueTimeoutMs;
      const waiting: Waiting = { resolve, reject, timers: [] };
      waiting.timers.push(setTimeout(() => {
        if (Date.now() - this.loggedWaitAt >= NOTICE_AFTER_MS) {
          this.loggedWaitAt = Date.now();
          this.core.log.warn({ endpoint: this.route.endpointId, role: this.role, pool_size: this.size, waiting: this.waiting.size }, 'pooled clients are waiting for a free backend');
        }
        client.notice(errorResponse({
          severity: 'NOTICE', sqlstate: '01000',
          message: `waiting for a free connection: all ${this.size} pooled connections of this database are busy (${this.waiting.size} clients waiting)`,
        }));
      }, Math.min(NOTICE_AFTER_MS, timeoutMs / 2)));
      waiting.timers.push(setTimeout(() => {
        this.waiting.delete(client);
        reject(new CapacityError(
          `no pooled connection became free within ${timeoutMs / 1000} s: all ${this.size} connections of the pool are busy; ` +
          'shorten transactions, raise the pool_size of the database, or try again'));
      }, timeoutMs));
      this.waiting.set(client, waiting);
    });
  }

  /** The client stopped waiting (it went away). */
  cancelWait(client: PoolWaiter): void {
    const waiting = this.waiting.get(client);
    if (!waiting) return;
    for (const t of waiting.timers) clearTimeout(t);
    this.waiting.delete(client);
  }

  /** A backend back from its client, clean (idle, settings and statements known). */
  release(backend: PooledBackend): void {
    backend.owner = undefined;
    if (backend.closed) return;
    if (backend.afterCancelsSettle(() => this.release(backend))) return;
    backend.lastUsed = Date.now();
    const next = this.waiting.entries().next();
    if (!next.done) {
      const [client, waiting] = next.value;
      this.cancelWait(client);
      waiting.resolve(backend);
      return;
    }
    if (this.opened > this.size || this.wanted) {
      this.wanted = false;
      this.retire(backend);
      return;
    }
    this.idle.push(backend);
    this.sweep();
  }

  /** Another worker waits for a slot: an idle backend closes now, else the next one released. */
  giveBack(): void {
    const idle = this.idle.shift();
    if (idle) this.retire(idle);
    else this.wanted = true;
  }

  private async open(): Promise<PooledBackend> {
    this.opened++;
    let lease;
    const slots = this.core.poolSlots;
    let slot = false;
    try {
      if (slots && !(slot = await slots.take(this.key, this.size))) throw NO_SLOT;
      lease = await this.core.acquire(this.route);
      const params = new Map([['user', this.role], ['database', this.database]]);
      const session = await connectBackend(lease.address, params, this.route.endpointId, this.core.log, this.core.config.wakeTimeoutMs);
      const backend = new PooledBackend(session.socket, lease.address, session.pid, session.secret, lease, this.settings.maxPreparedStatements);
      this.serverParams ??= [...session.parameters.all()];
      backend.whenClosed(() => {
        if (slot) slots!.give(this.key);
        this.forget(backend);
      });
      return backend;
    } catch (err) {
      lease?.release();
      if (slot) slots!.give(this.key);
      this.opened--;
      if (err !== NO_SLOT) this.serveWaiting();
      throw err;
    }
  }

  /** Closes a backend that no longer counts against the size. */
  private retire(backend: PooledBackend): void {
    this.retired.add(backend);
    this.opened--;
    backend.close();
  }

  private forget(backend: PooledBackend): void {
    if (!this.retired.delete(backend)) this.opened--;
    const at = this.idle.indexOf(backend);
    if (at >= 0) this.idle.splice(at, 1);
    this.serveWaiting();
    this.dropIfEmpty();
  }

  /** Room was made (a backend closed, an open failed, another worker gave a slot back): open for whoever waits first. */
  serveWaiting(): void {
    while (this.waiting.size > 0 && this.opened < this.size) {
      const [client, waiting] = this.waiting.entries().next().value!;
      this.cancelWait(client);
      this.open().then(waiting.resolve, (err) => (err === NO_SLOT ? this.wait(client).then(waiting.resolve, waiting.reject) : waiting.reject(err)));
    }
  }

  /** Closes backends idle longer than the idle timeout, checking as long as some are idle. */
  private sweep(): void {
    if (this.sweeper) return;
    const every = Math.max(100, Math.min(5000, this.settings.idleTimeoutMs / 2));
    this.sweeper = setInterval(() => {
      const cutoff = Date.now() - this.settings.idleTimeoutMs;
      while (this.idle.length > 0 && this.idle[0]!.lastUsed <= cutoff) this.retire(this.idle.shift()!);
      if (this.idle.length === 0) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      }
    }, every);
    this.sweeper.unref();
  }

  dropIfEmpty(): void {
    if (this.clients === 0 && this.opened === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      this.onEmpty(this);
    }
  }

  /** Closes every idle backend (the proxy is closing; busy ones end with their clients). */
  closeIdle(): void {
    for (const b of this.idle.splice(0)) this.retire(b);
  }
}
