import type { Catalog } from '../catalog/catalog.ts';
import type { Events } from '../events/events.ts';
import { recordNodeLost } from '../events/node-events.ts';
import type { Logger } from '../log.ts';

/**
 * Declares silent nodes dead, once each, whichever live node gets there first (one conditional
 * update): the node's generation grows, which fences it (its heartbeat no longer matches, so it
 * stops its computes and writes nothing more to the store, src/nodes/nodes.ts), and its databases
 * are placed on the live nodes, spread by room. Their next connection wakes them there from the
 * store. A `node.lost` event is recorded with the change. Returns the nodes fenced.
 */
export async function fenceDeadNodes(catalog: Catalog, events: Events, deadAfterSeconds: number, log: Logger): Promise<string[]> {
  const fenced: string[] = [];
  const { rows } = await catalog.query<{ id: string }>(
    `SELECT id FROM nodes WHERE fenced_at IS NULL AND heartbeat_at < clock_timestamp() - make_interval(secs => $1)`, [deadAfterSeconds]);
  for (const { id } of rows) {
    const moved = await catalog.tx(async (tx) => {
      const { rows: [node] } = await tx.query<{ generation: number; silent: number }>(
        `UPDATE nodes SET generation = generation + 1, fenced_at = clock_timestamp(), draining = false
          WHERE id = $1 AND fenced_at IS NULL AND heartbeat_at < clock_timestamp() - make_interval(secs => $2)
          RETURNING generation, extract(epoch FROM fenced_at - heartbeat_at)::float8 AS silent`, [id, deadAfterSeconds]);
      if (!node) return undefined;
      const { rows: placed } = await tx.query<{ id: string }>('SELECT id FROM databases WHERE node_id = $1 ORDER BY id', [id]);
      // Round robin over the live nodes, the emptiest first.
      const { rowCount: count } = await tx.query(
        `WITH live AS (
           SELECT n.id, row_number() OVER (ORDER BY (SELECT count(*) FROM databases d WHERE d.node_id = n.id)::float8 / n.max_computes, n.id) - 1 AS slot,
                  count(*) OVER () AS n
             FROM nodes n WHERE n.fenced_at IS NULL AND NOT n.draining AND n.heartbeat_at > clock_timestamp() - make_interval(secs => $2)),
         orphans AS (SELECT d.id, row_number() OVER (ORDER BY d.id) - 1 AS i FROM databases d WHERE d.node_id = $1)
         UPDATE databases d SET node_id = live.id FROM orphans, live
          WHERE d.id = orphans.id AND live.slot = orphans.i % live.n`, [id, deadAfterSeconds]);
      await recordNodeLost(events, { id, generation: node.generation, silentSeconds: node.silent, databases: placed.map((d) => d.id) }, tx);
      return count ?? 0;
    });
    if (moved === undefined) continue;
    fenced.push(id);
    log.error({ node: id, databases: moved, dead_after_seconds: deadAfterSeconds }, 'node lost: fenced, and its databases placed on live nodes (they wake there from the store)');
  }
  return fenced;
}
