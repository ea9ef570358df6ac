import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { type CuRange, rangeView } from '../../src/autoscaling.ts';
import type { Catalog } from '../../src/catalog/catalog.ts';
import type { ComputeSizes } from '../../src/compute-sizes.ts';
import type { Databases } from '../../src/databases.ts';
import { BadRequestError } from '../../src/errors.ts';
import { databaseScope } from '../auth.ts';
import { Autoscaling, IdParams, errorResponses } from '../schemas.ts';

const DAY_MS = 86_400_000;

const ComputeSizesQuery = Type.Object({
  from: Type.Optional(Type.String({ description: 'ISO 8601; default: an hour ago; at most 7 days back (sizes are kept 7 days)' })),
}, { additionalProperties: false });

const ComputeSizeHistory = Type.Object({
  database_id: Type.String(),
  autoscaling: Autoscaling,
  current_cu: Type.Number(),
  sizes: Type.Array(Type.Object({ at: Type.String(), cu: Type.Number({ description: 'the size from this time on; 0 = stopped' }) }), {
    description: 'oldest first; the first is the size held at `from`',
  }),
});

/** The sizes a database's compute took over time (the console's chart, `pgfleet db sizes`). */
export const computeSizeRoutes: FastifyPluginAsyncTypebox<{ databases: Databases; sizes: ComputeSizes; catalog: Catalog; defaultAutoscaling: CuRange }> = async (app, opts) => {
  app.get('/v1/databases/:id/compute_sizes', {
    schema: {
      summary: "The sizes its compute took over time, in compute units (its main branch's compute)",
      tags: ['databases'], security: [{ apiKey: [] }], params: IdParams, querystring: ComputeSizesQuery, response: { 200: ComputeSizeHistory, ...errorResponses },
    },
  }, async (req) => {
    const db = await opts.databases.get(await databaseScope(req, req.params.id, opts.catalog), req.params.id);
    const from = req.query.from === undefined ? new Date(Date.now() - 3_600_000) : new Date(Date.parse(req.query.from));
    if (Number.isNaN(from.getTime())) throw new BadRequestError('from: not a timestamp; use ISO 8601, e.g. 2026-11-01T00:00:00Z');
    if (Date.now() - from.getTime() > 7 * DAY_MS) throw new BadRequestError('from: sizes are kept 7 days; pick a later time');
    const range = db.autoscaling ?? opts.defaultAutoscaling;
    const state = opts.databases.stateOf(db).state;
    const points = await opts.sizes.history(db.id, db.branchId, from);
    return {
      database_id: db.id,
      autoscaling: rangeView(range),
      current_cu: state === 'running' ? db.recordedCu || range.minCu : 0,
      sizes: points.map((p) => ({ at: p.at.toISOString(), cu: p.cu })),
    };
  });
};
