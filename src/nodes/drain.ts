import type { Catalog } from '../catalog/catalog.ts';
import type { RouteCache } from '../catalog/route-cache.ts';
import { type BranchRoute, branchRefOf, routesOfDatabase } from '../catalog/routes.ts';
import type { ComputeManager } from '../computes.ts';
import type { ComputeTarget } from '../compute-target.ts';
import { PgfleetError } from '../errors.ts';
import type { Events } from '../events/events.ts';
import { recordNodeDrained } from '../events/node-events.ts';
import type { Logger } from '../log.ts';
import type { LocalProvider } from '../providers/local/local-provider.ts';
import type { Nodes } from './nodes.ts';
import type { Owners } from './owners.ts';

/** A session of a database that is moving to another node: it ends, and reconnecting reaches the new node. */
export class DatabaseMovingError extends PgfleetError {
  constructor(message: string) {
    super(message, '57P01', 409, 'database_moving');
  }
}

export interface DrainDeps {
  catalog: Catalog;
  events: Events;
  nodes: Nodes;
  computes: ComputeManager;
  local: LocalProvider;
  owners: Owners;
  routes: RouteCache;
  targetFor(route: BranchRoute): ComputeTarget;
  log: Logger;
}

/**
 * Moves this node's databases to other nodes, one at a time: each is suspended (its sessions
 * end), its files here go once the store holds them whole (evicted), its placement changes, and
 * a database that was running is woken on its new node. Meanwhile no new database is placed here.
 */
export class Drainer {
  private running: Promise<void> | undefined;

  constructor(private readonly deps: DrainDeps) {}

  /** Starts draining this node in the background; resolves with how many databases it holds. */
  async start(): Promise<number> {
    const { catalog, nodes, log } = this.deps;
    await nodes.place(nodes.id); // a 409 when no other node can take them
    await catalog.query('UPDATE nodes SET draining = true WHERE id = $1', [nodes.id]);
    const { rows } = await catalog.query<{ n: number }>('SELECT count(*)::int AS n FROM databases WHERE node_id = $1', [nodes.id]);
    this.running ??= this.run().catch((err) => log.error({ err: String(err) }, 'drain stopped')).finally(() => (this.running = undefined));
    return rows[0]!.n;
  }

  private async run(): Promise<void> {
    const { catalog, events, nodes, log } = this.deps;
    const startedAt = new Date();
    const failed = new Set<string>();
    let moved = 0;
    for (;;) {
      const { rows } = await catalog.query<{ id: string }>(
        'SELECT id FROM databases WHERE node_id = $1 AND NOT (id = ANY($2)) ORDER BY created_at LIMIT 1', [nodes.id, [...failed]]);
      if (!rows[0]) break;
      const started = Date.now();
      try {
        const to = await this.move(rows[0].id);
        moved++;
        log.info({ database: rows[0].id, to, ms: Date.now() - started }, 'drain: database moved');
      } catch (err) {
        failed.add(rows[0].id);
        log.warn({ database: rows[0].id, err: String(err) }, 'drain: database not moved; it stays on this node');
      }
    }
    log.info({ node: nodes.id, moved, left: failed.size }, 'drain finished');
    await recordNodeDrained(events, { id: nodes.id, startedAt, moved, left: failed.size });
  }

  /** Moves one database to the live node with the most room; returns that node. */
  async move(databaseId: string): Promise<string> {
    const { catalog, nodes, computes, local, owners, routes, targetFor } = this.deps;
    const to = await nodes.place(nodes.id);
    const branches = await routesOfDatabase(catalog, databaseId);
    const wasRunning = branches.some((r) => computes.info(r.branchId).state === 'running');
    const reason = new DatabaseMovingError(`terminating connection: the database is moving to another node (${to}); reconnect`);
    // Placed there first (nothing starts here any more), held there until this node let go of every branch.
    await catalog.query('UPDATE databases SET node_id = $2, moving_from = $3 WHERE id = $1 AND node_id = $3', [databaseId, to, nodes.id]);
    await routes.changed(databaseId);
    try {
      for (const route of branches) await computes.hold(targetFor(route), reason, () => local.files.evict(branchRefOf(route)));
    } catch (err) {
      await catalog.query('UPDATE databases SET node_id = $3, moving_from = NULL WHERE id = $1 AND node_id = $2', [databaseId, to, nodes.id]);
      await routes.changed(databaseId);
      throw err;
    }
    await catalog.query('UPDATE databases SET moving_from = NULL WHERE id = $1', [databaseId]);
    for (const route of branches) await computes.remove(route.branchId);
    // Moved: a wake there that fails now is retried by the next connection.
    const main = branches.find((r) => r.root);
    if (wasRunning && main) {
      await owners.of(to).wake({ ...main, node: await nodes.record(to) })
        .catch((err) => this.deps.log.warn({ database: databaseId, to, err: String(err) }, 'drain: the moved database did not wake on its new node; its next connection wakes it'));
    }
    return to;
  }
}
