import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Reconciler } from '../../src/provider-sync/reconcile.ts';
import { requireOperator } from '../auth.ts';
import { ReconcileReport, errorResponses } from '../schemas.ts';

/** Operator route: a reconciliation pass now (what `pgfleet neon reconcile` calls). */
export const reconcileRoutes: FastifyPluginAsyncTypebox<{ reconciler: Reconciler }> = async (app, { reconciler }) => {
  app.post('/v1/neon/reconcile', {
    onRequest: async (req) => requireOperator(req),
    schema: {
      summary: "Compare the catalog with each neon region's projects now: finish abandoned creates, report and (after the grace period) delete orphans, mark databases whose project is gone as failed",
      tags: ['operator'], security: [{ apiKey: [] }], response: { 200: ReconcileReport, ...errorResponses },
    },
  }, async () => {
    const r = await reconciler.run();
    return {
      regions: r.regions.map((g) => ({
        region: g.region, provider: g.provider, resources: g.resources, resumed: g.resumed, missing: g.missing.map((m) => ({ database_id: m.databaseId, detail: m.detail })),
        orphans: g.orphans.map((o) => ({ resource_id: o.resourceId, database_id: o.databaseId, first_seen_at: o.firstSeenAt.toISOString(), deleted: o.deleted })),
        ...(g.error ? { error: g.error } : {}),
      })),
      failed: r.failed.map((f) => ({ database_id: f.databaseId, region: f.region, detail: f.detail })),
      pending_deletions: r.pendingDeletions.map((d) => ({
        database_id: d.databaseId, partner_id: d.partnerId, region: d.region, attempts: d.attempts, last_error: d.lastError,
        next_attempt_at: d.nextAttemptAt.toISOString(), created_at: d.createdAt.toISOString(),
      })),
    };
  });
};
