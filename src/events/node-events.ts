import type { Events, Queryable } from './events.ts';

/**
 * The fleet's operator events, one call each where the fleet code learns of them (the drain's
 * end, the fencing of a silent node). Their ids say which drain or loss, so however many gateways
 * see it, each is recorded once: true when this call recorded it.
 */
export function recordNodeDrained(events: Events, node: { id: string; startedAt: Date; moved: number; left: number }): Promise<boolean> {
  return events.record({
    id: `evt_node_drained_${node.id}_${node.startedAt.getTime()}`, type: 'node.drained', partnerId: null,
    data: { node_id: node.id, databases_moved: node.moved, databases_left: node.left, started_at: node.startedAt.toISOString() },
  }).then((recorded) => recorded > 0);
}

/** `db`: the transaction that fences the node, so that the event and the fencing commit together. */
export function recordNodeLost(events: Events, node: { id: string; generation: number; silentSeconds: number; databases: string[] }, db?: Queryable): Promise<boolean> {
  return events.record({
    id: `evt_node_lost_${node.id}_g${node.generation}`, type: 'node.lost', partnerId: null,
    data: { node_id: node.id, generation: node.generation, silent_seconds: Math.round(node.silentSeconds), databases: node.databases },
  }, db).then((recorded) => recorded > 0);
}
