/**
 * Compute sessions kept between HTTP requests, so that a query on a warm database is one round
 * trip. One small pool per (branch, role, database): a session never serves another role or
 * database. Between uses it is reset (ROLLBACK when a transaction is open, then DISCARD ALL),
 * after the answer has gone out. An idle session holds no lease on its compute, so it does not
 * keep the compute awake or active; it is dropped when the compute stops or restarts.
 */
import type { BranchRoute } from '../../src/catalog/routes.ts';
import type { Lease } from '../../src/compute-target.ts';
import { sendCancel } from '../cancel.ts';
import { backendParams, startCompute } from '../connection.ts';
import type { ConnectionContext } from '../context.ts';
import { SqlConnection } from './sql-connection.ts';

/** Idle sessions kept per (branch, role, database); more are closed after use. */
export const MAX_IDLE_PER_KEY = 4;
/** An idle session older than this is closed (its backend process costs the compute memory). */
export const IDLE_TIMEOUT_MS = 60_000;

interface Pooled {
  connection: SqlConnection;
  branchId: string;
  key: string;
  /** The reset after its last use; a session is handed out once it is done. */
  reset?: Promise<void>;
}

export class SqlSessionPool {
  private readonly idle = new Map<string, Pooled[]>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly onState: (branchId: string, state: string) => void;

  constructor(private readonly ctx: ConnectionContext) {
    this.sweeper = setInterval(() => this.sweep(), IDLE_TIMEOUT_MS / 4);
    this.sweeper.unref();
    this.onState = (branchId, state) => {
      if (state !== 'running') this.dropBranch(branchId);
    };
    ctx.core.computes.on('state', this.onState);
  }

  /** An idle session of this role and database on the leased compute run, or a new one. */
  async take(lease: Lease, route: BranchRoute, role: string, database: string): Promise<Pooled> {
    const key = `${route.branchId}\0${role}\0${database}`;
    const list = this.idle.get(key) ?? [];
    while (list.length > 0) {
      const pooled = list.pop()!;
      await pooled.reset?.catch(() => {});
      if (!pooled.connection.closed && pooled.connection.address === lease.address) return pooled;
      pooled.connection.close();
    }
    const backend = await startCompute(lease, backendParams(new Map([['database', database]]), role), route, this.ctx);
    // Only the proxy cancels these sessions' statements (no client holds a key): straight to the compute.
    const connection = new SqlConnection(backend, lease.address, () => {
      void sendCancel({ address: lease.address, backendPid: backend.pid, backendSecret: backend.secret }).catch(() => {});
    });
    return { connection, key, branchId: route.branchId };
  }

  /**
   * Keeps a session after its answer went out, or closes it when enough are kept. Its reset runs
   * now; a request that takes it meanwhile waits for the reset rather than starting a session.
   */
  give(pooled: Pooled): void {
    const { connection } = pooled;
    const list = this.idle.get(pooled.key) ?? [];
    if (connection.closed || list.length >= MAX_IDLE_PER_KEY) {
      connection.close();
      return;
    }
    pooled.reset = (async () => {
      if (connection.status !== 'I') await connection.simple('ROLLBACK');
      await connection.simple('DISCARD ALL');
      connection.idleSince = Date.now();
    })().catch(() => connection.destroy());
    connection.idleSince = Date.now();
    list.push(pooled);
    this.idle.set(pooled.key, list);
  }

  private dropBranch(branchId: string): void {
    for (const [key, list] of this.idle) {
      if (list[0]?.branchId !== branchId) continue;
      for (const p of list) p.connection.close();
      this.idle.delete(key);
    }
  }

  private sweep(): void {
    const cutoff = Date.now() - IDLE_TIMEOUT_MS;
    for (const [key, list] of this.idle) {
      const keep = list.filter((p) => !p.connection.closed && p.connection.idleSince > cutoff);
      for (const p of list) if (!keep.includes(p)) p.connection.close();
      if (keep.length > 0) this.idle.set(key, keep);
      else this.idle.delete(key);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.ctx.core.computes.off('state', this.onState);
    for (const list of this.idle.values()) for (const p of list) p.connection.close();
    this.idle.clear();
  }
}
