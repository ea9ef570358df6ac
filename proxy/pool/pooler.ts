/**
 * The pooled side of the proxy: one pool per (branch, role, database name), never shared
 * across roles or tenants, and the startup answer the proxy gives a pooled client itself
 * (ParameterStatus, its own BackendKeyData, ReadyForQuery) without holding a backend.
 */
import type { Duplex } from 'node:stream';
import type { BranchRoute } from '../../src/catalog/routes.ts';
import { CapacityError } from '../../src/errors.ts';
import type { ProxyCore } from '../../src/gateway.ts';
import { type CancelKeys, pooledClientPid } from '../cancel.ts';
import { ConnectionRefused } from '../errors.ts';
import { backendKeyData, parameterStatus, readyForQuery } from '../protocol/messages.ts';
import type { Session } from '../session.ts';
import { BackendPool, type PoolWaiter } from './backend-pool.ts';
import { PooledClient } from './pooled-client.ts';
import { TX_IDLE } from '../protocol/codes.ts';
import { startupSettings } from './session-settings.ts';

export interface PooledConnect {
  socket: Duplex;
  route: BranchRoute;
  role: string;
  /** The client's startup parameters and what is left of `options` after pgfleet's own. */
  params: Map<string, string>;
  options: string;
  /** What the client sent after its startup packet. */
  early: Buffer;
  session: Omit<Session, 'terminate'>;
}

export class Pooler {
  private readonly pools = new Map<string, BackendPool>();
  private clients = 0;

  constructor(private readonly core: ProxyCore, private readonly cancels: CancelKeys, private readonly resetSessions = true) {
    // Proxy workers share each pool's size (src/workers/pool-slots.ts).
    core.poolSlots?.onFreed((key) => this.pools.get(key)?.serveWaiting());
    core.poolSlots?.onWanted((key) => this.pools.get(key)?.giveBack());
  }

  /** Pooled clients connected to this gateway. */
  get clientCount(): number {
    return this.clients;
  }

  /** The pool of a (branch, role, database), made on first use; its route (pool size) kept fresh. */
  poolFor(route: BranchRoute, role: string, database: string): BackendPool {
    const key = `${route.branchId}\0${role}\0${database}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new BackendPool(key, route, role, database, this.core, this.core.config.pool, (p) => this.pools.delete(p.key));
      this.pools.set(key, pool);
    } else {
      pool.route = route;
    }
    return pool;
  }

  /**
   * Answers the startup of an authenticated client and serves it. Resolves with the client
   * (a Session), whose `whenEnded` callbacks run when it is gone.
   */
  async connect(c: PooledConnect): Promise<PooledClient> {
    if (c.params.has('replication')) throw new ConnectionRefused('replication connections are not available on a pooled endpoint', '0A000');
    if (this.clients >= this.core.config.pool.maxClients) {
      throw new CapacityError(`this gateway already serves ${this.core.config.pool.maxClients} pooled connections; try again shortly`);
    }
    const settings = startupSettings(c.params, c.options);
    const pool = this.poolFor(c.route, c.role, c.params.get('database') || c.role);
    this.clients++;
    pool.clients++;
    let client: PooledClient | undefined;
    try {
      const serverParams = await this.serverParams(pool, c.socket);
      client = new PooledClient({
        socket: c.socket, pool, settings, session: c.session,
        unpooledHost: `${c.route.endpointId}.${this.core.config.domain}`, resetSessions: this.resetSessions,
      });
      // No backend is the client's own: its pid is made up, one no backend has (README, Pooled endpoints).
      const key = await this.cancels.issue(pooledClientPid(), client);
      const answer = serverParams.map(([name, value]) => parameterStatus(name, settings.get(name.toLowerCase()) ?? value));
      c.socket.write(Buffer.concat([...answer, backendKeyData(key.pid, key.secret), readyForQuery(TX_IDLE)]));
      client.whenEnded(() => {
        this.cancels.revoke(key);
        this.left(pool);
      });
      client.start(c.early);
      return client;
    } catch (err) {
      if (!client) this.left(pool);
      throw err;
    }
  }

  private left(pool: BackendPool): void {
    this.clients--;
    pool.clients--;
    pool.dropIfEmpty();
  }

  /** The compute's startup parameters, known once the pool has opened a backend (opening one if needed). */
  private async serverParams(pool: BackendPool, socket: Duplex): Promise<[string, string][]> {
    if (!pool.serverParams) {
      const waiter: PoolWaiter = { notice: (message) => socket.write(message) };
      pool.release(await pool.acquire(waiter));
    }
    return pool.serverParams!;
  }

  /** Closes idle backends (the proxy is closing; clients are closed by the listener). */
  close(): void {
    for (const pool of this.pools.values()) pool.closeIdle();
  }
}
