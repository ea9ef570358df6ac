import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ComputeManager } from '../../src/computes.ts';
import { NotFoundError } from '../../src/errors.ts';
import type { Drainer } from '../../src/nodes/drain.ts';
import type { NodeView, Nodes } from '../../src/nodes/nodes.ts';
import { requireOperator } from '../auth.ts';
import { IdParams, errorResponses } from '../schemas.ts';

export interface NodeRoutesOptions {
  nodes: Nodes;
  drainer: Drainer;
  computes: ComputeManager;
  maxComputes: number;
}

const Node = Type.Object({
  id: Type.String(),
  address: Type.Union([Type.String(), Type.Null()], { description: 'host:port of its node link (null: a gateway alone)' }),
  state: Type.Union([Type.Literal('live'), Type.Literal('dead'), Type.Literal('fenced'), Type.Literal('draining')], {
    description: 'live; dead: silent past PGFLEET_NODE_DEAD_AFTER and not yet fenced; fenced: declared dead, its databases placed elsewhere, until it starts again; draining: moving its databases to other nodes',
  }),
  generation: Type.Integer({ description: 'grows each time the node is fenced; a node whose generation changed writes nothing more' }),
  heartbeat_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  max_computes: Type.Integer(),
  running: Type.Integer({ description: 'computes starting or running there at its last heartbeat' }),
  databases: Type.Integer({ description: 'local databases placed on it' }),
  database_ids: Type.Array(Type.String(), { description: 'their ids (the first 10,000)' }),
});

const view = (n: NodeView) => ({
  id: n.id, address: n.address, state: n.state, generation: n.generation, heartbeat_at: n.heartbeatAt?.toISOString() ?? null,
  max_computes: n.maxComputes, running: n.running, databases: n.databaseIds.length, database_ids: n.databaseIds,
});

/** Operator routes: the fleet's nodes with their databases, and draining one. */
export const nodeRoutes: FastifyPluginAsyncTypebox<NodeRoutesOptions> = async (app, { nodes, drainer, computes, maxComputes }) => {
  const list = () => nodes.list({ maxComputes, running: computes.activeCount });

  app.get('/v1/nodes', {
    onRequest: async (req) => requireOperator(req),
    schema: {
      summary: 'The nodes of the fleet, their state and the databases placed on each (operator key)',
      tags: ['operator'], security: [{ apiKey: [] }], response: { 200: Type.Object({ nodes: Type.Array(Node) }), ...errorResponses },
    },
  }, async () => ({ nodes: (await list()).map(view) }));

  app.post('/v1/nodes/:id/drain', {
    onRequest: async (req) => requireOperator(req),
    schema: {
      summary: 'Move every database of a node to the other nodes, one at a time (each unavailable for a suspend and a wake); no new database is placed on it until it starts again',
      tags: ['operator'], security: [{ apiKey: [] }], params: IdParams, response: { 202: Node, ...errorResponses },
    },
  }, async (req, reply) => {
    const node = (await list()).find((n) => n.id === req.params.id);
    if (!node) throw new NotFoundError(`node "${req.params.id}" not found`);
    if (node.id === nodes.id) await drainer.start();
    else await nodes.askDrain(await nodes.record(node.id));
    const now = (await list()).find((n) => n.id === node.id)!;
    return reply.code(202).send(view(now));
  });
};
