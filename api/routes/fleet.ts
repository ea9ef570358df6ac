import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Catalog } from '../../src/catalog/catalog.ts';
import type { ComputeManager } from '../../src/computes.ts';
import { fleetCounts } from '../../src/fleet-counts.ts';
import type { OperatorMetrics } from '../../src/metrics.ts';
import { requireOperator } from '../auth.ts';
import { errorResponses } from '../schemas.ts';

export interface FleetRoutesOptions {
  catalog: Catalog;
  computes: ComputeManager;
  metrics: OperatorMetrics;
}

const Fleet = Type.Object({
  partners: Type.Integer(),
  databases: Type.Integer(),
  databases_by_partner: Type.Record(Type.String(), Type.Integer(), { description: 'partner id → its databases' }),
  computes_active: Type.Integer({ description: 'computes starting or running on this gateway (pgfleet_computes_active)' }),
  wakes_total: Type.Object({ ok: Type.Integer(), failed: Type.Integer() }, { description: 'pgfleet_compute_wakes_total by outcome' }),
  auth_failures_total: Type.Integer({ description: 'pgfleet_proxy_auth_failures_total' }),
  connections_total: Type.Record(Type.String(), Type.Integer(), { description: 'pgfleet_proxy_connections_total by outcome' }),
  counters_since: Type.String({ format: 'date-time', description: "when this gateway's counters started; a rate is the difference of two answers over their time apart" }),
});

/** Fleet-wide counts as JSON for the operator (the same counters /metrics exposes, beside catalog totals). */
export const fleetRoutes: FastifyPluginAsyncTypebox<FleetRoutesOptions> = async (app, { catalog, computes, metrics }) => {
  app.get('/v1/fleet', {
    schema: {
      summary: 'Fleet-wide counts: partners, databases, active computes, wakes, auth failures, connections (operator key)',
      tags: ['operator'], security: [{ apiKey: [] }], response: { 200: Fleet, ...errorResponses },
    },
  }, async (req) => {
    requireOperator(req);
    return fleetCounts(catalog, computes, metrics);
  });
};
