import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { MigrationJob, MigrationJobs, TargetReport } from '../../src/migrations/jobs.ts';
import { ownerOf, partnerOf } from '../auth.ts';
import { MigrationCreate, MigrationList, MigrationParams, MigrationView, TargetList, TargetQuery } from '../migration-schemas.ts';
import { errorResponses } from '../schemas.ts';

const security = [{ apiKey: [] }];
const tags = ['migrations'];
const iso = (d: Date | null) => (d ? d.toISOString() : null);

const jobView = (j: MigrationJob) => ({
  id: j.id, partner_id: j.partnerId, name: j.name, sql: j.sql, selector: j.selector, concurrency: j.concurrency, max_failures: j.maxFailures,
  dry_run: j.dryRun, branches: j.branches, state: j.state, state_detail: j.stateDetail, counts: j.counts,
  created_at: j.createdAt.toISOString(), started_at: iso(j.startedAt), finished_at: iso(j.finishedAt),
});
const targetView = (t: TargetReport) => ({
  database_id: t.databaseId, branch_id: t.branchId, branch: t.branch, state: t.state, duration_ms: t.durationMs, error: t.error,
  sqlstate: t.sqlstate, reason: t.reason, updated_at: t.updatedAt.toISOString(),
});

/** Fleet-wide migrations: a partner's own; the operator's key sees, pauses and resumes every partner's. */
export const migrationRoutes: FastifyPluginAsyncTypebox<{ jobs: MigrationJobs }> = async (app, { jobs }) => {
  const full = async (owner: string | undefined, job: MigrationJob) => ({
    ...jobView(job), failures: (await jobs.targets(owner, job.id, { state: 'failed', limit: 100 })).map(targetView),
  });
  const owner = (req: Parameters<typeof ownerOf>[0]) => ownerOf(req) ?? undefined;

  app.post('/v1/migrations', {
    schema: {
      summary: "Run SQL in each selected database (one transaction each, as its owner role); a name is applied at most once per database",
      tags, security, body: MigrationCreate, response: { 202: MigrationView, ...errorResponses },
    },
  }, async (req, reply) => {
    const partnerId = partnerOf(req);
    const b = req.body;
    const job = await jobs.create(partnerId, {
      name: b.name, sql: b.sql, selector: b.selector, concurrency: b.concurrency, maxFailures: b.max_failures, dryRun: b.dry_run, branches: b.branches,
    });
    return reply.code(202).send(await full(partnerId, job));
  });

  app.get('/v1/migrations', {
    schema: { summary: 'Migration jobs, newest first', tags, security, response: { 200: MigrationList, ...errorResponses } },
  }, async (req) => ({ migrations: (await jobs.list(owner(req))).map(jobView) }));

  app.get('/v1/migrations/:id', {
    schema: { summary: 'A migration job: its state, counts per database state, and its failures', tags, security, params: MigrationParams, response: { 200: MigrationView, ...errorResponses } },
  }, async (req) => full(owner(req), await jobs.get(owner(req), req.params.id)));

  app.get('/v1/migrations/:id/databases', {
    schema: {
      summary: 'The outcome per database (failures first): pending, applied (ms), failed (Postgres\'s error), skipped (why)',
      tags, security, params: MigrationParams, querystring: TargetQuery, response: { 200: TargetList, ...errorResponses },
    },
  }, async (req) => ({ databases: (await jobs.targets(owner(req), req.params.id, req.query)).map(targetView) }));

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.post(`/v1/migrations/:id/${action}`, {
      schema: {
        summary: {
          pause: 'Pause: no database starts the migration until it is resumed (those under way finish)',
          resume: 'Resume a paused migration where it was',
          cancel: 'Cancel: the databases it has not reached are skipped',
        }[action],
        tags, security, params: MigrationParams, response: { 200: MigrationView, ...errorResponses },
      },
    }, async (req) => full(owner(req), await jobs[action](owner(req), req.params.id)));
  }
};
