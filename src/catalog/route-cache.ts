/**
 * Endpoint routes kept in memory, so that a connection to a known endpoint costs the catalog
 * nothing. Whatever changes a database's rows (roles and passwords, quotas and settings, status,
 * branches, deletion) calls changed() once its transaction has committed: this gateway drops the
 * database's routes at once, and every other gateway when the coordinator's `invalidate` message
 * reaches it. What is not trusted meanwhile is not served: a load that overlapped a change is
 * returned but not kept, and while this gateway may be missing other gateways' messages (Redis
 * unreachable) every lookup reads the catalog. A route of a database on another node is not kept:
 * it carries that node's link address and heartbeat, which change without an API call (the node
 * restarts on another port, or goes silent). Any route is read again after maxAgeMs, which bounds
 * what a change made behind the API's back (SQL on the catalog) can go unseen.
 */
import { EventEmitter } from 'node:events';
import { type Coordinator, INVALIDATE } from '../coord/coordinator.ts';
import type { Catalog } from './catalog.ts';
import { type BranchRoute, routeByEndpoint } from './routes.ts';

export interface RouteCacheOptions {
  /** Any route is read again after this long. */
  maxAgeMs: number;
  /** Routes kept at most; the oldest go first. */
  maxEntries: number;
  /** Whether a route may be kept in memory (a database placed on another node: no, its node's address and heartbeat change without an API call). */
  keeps(route: BranchRoute): boolean;
}

interface Entry {
  route: BranchRoute;
  expiresAt: number;
}

const ROUTES_CHANGED = 'routes';

/** Emits 'changed' (databaseId, or undefined for all) whenever routes are dropped. */
export class RouteCache extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly endpointsOf = new Map<string, Set<string>>();
  /** One catalog read per endpoint at a time, joined only by lookups of the same epoch. */
  private readonly loading = new Map<string, { epoch: number; route: Promise<BranchRoute | undefined> }>();
  /** Grows with every change heard of: a load that began in an earlier epoch may be stale. */
  private epoch = 0;

  constructor(private readonly catalog: Catalog, private readonly coord: Coordinator, private readonly opts: RouteCacheOptions) {
    super();
    coord.subscribe(INVALIDATE, (m) => {
      if (m.type === ROUTES_CHANGED && m.from !== coord.gatewayId) this.drop(String(m.databaseId));
    });
    coord.onReconnect(() => this.drop(undefined));
  }

  /** The route of an endpoint (undefined: none, or its branch is still being made). */
  async byEndpoint(endpointId: string): Promise<BranchRoute | undefined> {
    const entry = this.entries.get(endpointId);
    if (entry && entry.expiresAt > Date.now() && this.coord.listening) return entry.route;
    const pending = this.loading.get(endpointId);
    if (pending && pending.epoch === this.epoch) return pending.route;
    const epoch = this.epoch;
    const route = routeByEndpoint(this.catalog, endpointId).then((r) => {
      if (r && epoch === this.epoch && this.coord.listening && this.opts.keeps(r)) this.keep(endpointId, r);
      return r;
    }).finally(() => {
      if (this.loading.get(endpointId)?.route === route) this.loading.delete(endpointId);
    });
    this.loading.set(endpointId, { epoch, route });
    return route;
  }

  /**
   * A database's rows changed (committed): its routes go here at once, and on every other gateway
   * once the message is out (Redis has handed it to every subscriber when this resolves).
   */
  async changed(databaseId: string): Promise<void> {
    this.drop(databaseId);
    await this.coord.publish(INVALIDATE, { type: ROUTES_CHANGED, from: this.coord.gatewayId, databaseId }).catch(() => {});
  }

  /** Routes kept now (metrics and tests). */
  get size(): number {
    return this.entries.size;
  }

  private keep(endpointId: string, route: BranchRoute): void {
    this.forget(endpointId);
    this.entries.set(endpointId, { route, expiresAt: Date.now() + this.opts.maxAgeMs });
    let endpoints = this.endpointsOf.get(route.databaseId);
    if (!endpoints) this.endpointsOf.set(route.databaseId, (endpoints = new Set()));
    endpoints.add(endpointId);
    while (this.entries.size > this.opts.maxEntries) this.forget(this.entries.keys().next().value!);
  }

  private forget(endpointId: string): void {
    const entry = this.entries.get(endpointId);
    if (!entry) return;
    this.entries.delete(endpointId);
    const endpoints = this.endpointsOf.get(entry.route.databaseId);
    endpoints?.delete(endpointId);
    if (endpoints?.size === 0) this.endpointsOf.delete(entry.route.databaseId);
  }

  /** Drops one database's routes (undefined: all of them). */
  private drop(databaseId: string | undefined): void {
    this.epoch++;
    if (databaseId === undefined) {
      this.entries.clear();
      this.endpointsOf.clear();
    } else {
      for (const endpointId of this.endpointsOf.get(databaseId) ?? []) this.entries.delete(endpointId);
      this.endpointsOf.delete(databaseId);
    }
    this.emit('changed', databaseId);
  }
}
