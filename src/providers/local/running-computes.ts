import type { Logger } from 'pino';
import type { ComputeCgroups } from '../../limits/cgroups.ts';
import { SOCKET_PORT, type PostgresServer } from '../../pg/server.ts';
import type { StorageSettings } from '../../storage/storage-config.ts';
import type { ProviderEvents } from '../provider.ts';
import type { Autoscaler } from './autoscaler.ts';
import { asAdmin } from './compute-admin.ts';
import { writeRuntimeSettings } from './compute-settings.ts';
import type { History } from './histories.ts';
import type { StorageGauges } from './storage-metrics.ts';
import { StoreWatch, type Watched } from './store-watch.ts';

/** A compute running on this node: its postmaster, the receiver of its WAL, the history it writes. */
export interface Running extends Watched {
  server: PostgresServer;
  history: History;
  databaseId: string;
  walAtStart: number;
  /** Whether its commits wait for the store now (the runtime settings file says so). */
  commitsWait: boolean;
  /** The Postgres settings of its size now (the same file). */
  sized: Record<string, string | number>;
}

/**
 * The computes running on this node, and what happens to them as a whole: the store watch every
 * second, commits made to wait for the store, and a stop without a word when this node is fenced.
 */
export class RunningComputes {
  private readonly map = new Map<string, Running>();
  private readonly watch: StoreWatch;

  constructor(private readonly opts: { settings: StorageSettings; cgroups: ComputeCgroups; scaler: Autoscaler; events: ProviderEvents; log: Logger }) {
    this.watch = new StoreWatch({
      settings: opts.settings, log: opts.log,
      setCommitsWait: (w, wait) => this.setCommitsWait(w as Running, wait),
      endStuck: (w, pids, reason) => {
        opts.events.onStuckCommits?.(w.branchId, pids, reason);
        void asAdmin(w.socketDir, SOCKET_PORT, (c) => c.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]))
          .catch((err) => opts.log.warn({ branch: w.branchId, err: String(err) }, 'could not end backends whose commits waited too long'));
      },
    });
  }

  get(branchId: string): Running | undefined {
    return this.map.get(branchId);
  }

  has(branchId: string): boolean {
    return this.map.has(branchId);
  }

  add(r: Running): void {
    this.map.set(r.branchId, r);
  }

  /** No longer counts the compute as running (it is being stopped); forget() once it has. */
  take(branchId: string): void {
    this.map.delete(branchId);
  }

  /** Forgets a compute that stopped: its cgroup goes. */
  forget(branchId: string): void {
    this.map.delete(branchId);
    this.opts.scaler.forget(branchId);
    this.opts.cgroups.remove(branchId);
  }

  all(): Running[] {
    return [...this.map.values()];
  }

  /** Whether the compute's commits wait for the store (durability "sync", or its WAL backlogged here), applied with a reload. */
  async setCommitsWait(r: Running, wait: boolean): Promise<void> {
    r.commitsWait = wait;
    writeRuntimeSettings(r.server.opts.pgdata, r.server.opts.user, { commitsWaitForStore: wait, sized: r.sized });
    r.streamer.setSync(wait);
    await asAdmin(r.server.opts.socketDir, SOCKET_PORT, (c) => c.query('SELECT pg_reload_conf()'));
  }

  /** Looks at every running compute whose WAL the store is not taking (StoreWatch); run every second. */
  async watchStore(): Promise<void> {
    for (const r of this.map.values()) {
      await this.watch.check(r).catch((err) => this.opts.log.warn({ branch: r.branchId, err: String(err) }, 'store watch failed'));
    }
  }

  /** The node may no longer write: the compute stops at once, uploading nothing more (another node serves its database now). */
  fence(branchId: string): void {
    const r = this.map.get(branchId);
    if (!r) return;
    this.opts.log.error({ branch: branchId }, 'this node was fenced: stopping the compute without writing anything more');
    this.map.delete(branchId);
    this.opts.scaler.forget(branchId);
    r.streamer.abort();
    void r.server.stop('immediate').finally(() => {
      this.opts.cgroups.remove(branchId);
      this.opts.events.onComputeExit?.(branchId, 'this node was fenced');
    });
  }

  /** This node was declared dead by the fleet: every compute stops now. */
  fenceAll(): void {
    for (const branchId of [...this.map.keys()]) this.fence(branchId);
  }

  /** The postmaster's pid (tests and diagnostics). */
  pid(branchId: string): number | undefined {
    return this.map.get(branchId)?.server.pid;
  }

  /** Whether the compute's WAL passed PGFLEET_STORAGE_MAX_BACKLOG on this node (its commits wait for the store). */
  backlogged(branchId: string): boolean {
    return this.map.get(branchId)?.backlogged ?? false;
  }

  /** How far the store holds the compute's WAL (benches, tests). */
  storedPosition(branchId: string): bigint | undefined {
    return this.map.get(branchId)?.streamer.stored;
  }

  /** WAL received from the compute and not yet in the store, in bytes. */
  backlog(branchId: string): number | undefined {
    return this.map.get(branchId)?.streamer.backlog;
  }

  /** The metrics' view of the computes' WAL on its way to the store. */
  gauges(): StorageGauges {
    return {
      lagSeconds: () => Math.max(0, ...this.all().map((r) => r.streamer.lagMs)) / 1000,
      backlogged: () => this.all().filter((r) => r.backlogged).length,
    };
  }
}
