import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Catalog } from '../../src/catalog/catalog.ts';
import type { Databases } from '../../src/databases.ts';
import { GRANULARITIES, type Granularity, databaseUsage, fleetUsage, parseRange } from '../../src/metering/consumption.ts';
import { usageExposition } from '../../src/metering/usage-exposition.ts';
import type { UsageTracker } from '../../src/metering/usage-tracker.ts';
import { databaseScope, partnerOf, requireOperator } from '../auth.ts';
import { IdParams, errorResponses } from '../schemas.ts';

export interface UsageRoutesOptions {
  databases: Databases;
  usage: UsageTracker;
  catalog: Catalog;
}

const security = [{ apiKey: [] }];
const tags = ['usage'];
const Timestamp = Type.String({ maxLength: 64, description: 'ISO 8601; default: the start of this month (from) and now (to)' });
const Usage = Type.Record(Type.String(), Type.Number(), {
  description: 'compute_time_seconds, active_time_seconds, data_transfer_bytes (egress), ingress_bytes, written_data_bytes, storage_bytes (highest), connections, connections_peak',
});

const DatabaseUsageQuery = Type.Object({
  from: Type.Optional(Timestamp),
  to: Type.Optional(Timestamp),
  granularity: Type.Optional(Type.Union(Object.keys(GRANULARITIES).map((g) => Type.Literal(g)), { default: 'daily' })),
});
const DatabaseUsage = Type.Object({
  database_id: Type.String(),
  granularity: Type.String(),
  from: Type.String(),
  to: Type.String(),
  periods: Type.Array(Type.Object({ period_start: Type.String(), usage: Usage })),
});
const FleetUsageQuery = Type.Object({
  from: Type.Optional(Timestamp),
  to: Type.Optional(Timestamp),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ maxLength: 512, pattern: '^[A-Za-z0-9_-]*$' })),
});
const FleetUsage = Type.Object({
  from: Type.String(),
  to: Type.String(),
  databases: Type.Array(Type.Object({ database_id: Type.String(), usage: Usage })),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});

/** The consumption API billing reads, and the per-database Prometheus series for the operator. */
export const usageRoutes: FastifyPluginAsyncTypebox<UsageRoutesOptions> = async (app, { databases, usage, catalog }) => {
  app.get('/v1/databases/:id/usage', {
    schema: {
      summary: "A database's usage per hour, day or month (UTC)", tags, security,
      params: IdParams, querystring: DatabaseUsageQuery, response: { 200: DatabaseUsage, ...errorResponses },
    },
  }, async (req) => {
    const db = await databases.get(await databaseScope(req, req.params.id, catalog), req.params.id);
    const granularity = (req.query.granularity ?? 'daily') as Granularity;
    const range = parseRange(req.query.from, req.query.to, granularity);
    const periods = await databaseUsage(usage, catalog, db.id, range, granularity);
    return { database_id: db.id, granularity, from: range.from.toISOString(), to: range.to.toISOString(), periods };
  });

  app.get('/v1/usage', {
    schema: {
      summary: "The partner's usage per database over a range, in database id order, a page at a time", tags, security,
      querystring: FleetUsageQuery, response: { 200: FleetUsage, ...errorResponses },
    },
  }, async (req) => {
    const range = parseRange(req.query.from, req.query.to, 'monthly');
    const page = await fleetUsage(usage, catalog, partnerOf(req), range, { limit: req.query.limit ?? 100, cursor: req.query.cursor });
    return { from: range.from.toISOString(), to: range.to.toISOString(), databases: page.items, next_cursor: page.nextCursor ?? null };
  });

  app.get('/metrics/usage', {
    schema: { summary: 'Per-database usage as Prometheus series (operator key)', tags, security },
  }, async (req, reply) => {
    requireOperator(req);
    const { contentType, text } = await usageExposition(usage, catalog);
    return reply.type(contentType).send(text);
  });
};
