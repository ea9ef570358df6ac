import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Events } from '../../src/events/events.ts';
import type { PartnerTemplate, PartnerTemplates } from '../../src/partner-templates.ts';
import { partnerOf } from '../auth.ts';
import { MigrationParams, TemplateCreate, TemplateList, TemplateView } from '../migration-schemas.ts';
import { errorResponses } from '../schemas.ts';

const security = [{ apiKey: [] }];
const tags = ['templates'];

const view = (t: PartnerTemplate) => ({
  id: t.id, name: t.name, source_database_id: t.sourceDatabaseId, source_branch: t.sourceBranch, region: t.region, pg_version: t.pgVersion,
  database: t.databaseName, role: t.ownerRole, roles: t.roles, created_at: t.createdAt.toISOString(),
});

/** A partner's templates: point-in-time copies of its databases that new databases are made from (`template` on POST /v1/databases). */
export const templateRoutes: FastifyPluginAsyncTypebox<{ templates: PartnerTemplates; events: Events }> = async (app, { templates, events }) => {
  app.post('/v1/templates', {
    schema: {
      summary: 'Make a template: a copy of a database (or one of its branches) as it is now, kept as long as the template exists (local regions)',
      tags, security, body: TemplateCreate, response: { 201: TemplateView, ...errorResponses },
    },
  }, async (req, reply) => {
    const partnerId = partnerOf(req);
    const t = await templates.create(partnerId, { databaseId: req.body.database_id, branch: req.body.branch, name: req.body.name });
    await events.recordAfter({ type: 'template.created', partnerId, databaseId: t.sourceDatabaseId, data: { template_id: t.id, name: t.name, source_branch: t.sourceBranch } });
    return reply.code(201).send(view(t));
  });

  app.get('/v1/templates', {
    schema: { summary: "The partner's templates", tags, security, response: { 200: TemplateList, ...errorResponses } },
  }, async (req) => ({ templates: (await templates.list(partnerOf(req))).map(view) }));

  app.get('/v1/templates/:id', {
    schema: { summary: 'A template', tags, security, params: MigrationParams, response: { 200: TemplateView, ...errorResponses } },
  }, async (req) => view(await templates.get(partnerOf(req), req.params.id)));

  app.delete('/v1/templates/:id', {
    schema: {
      summary: 'Delete a template and its data (409 while a database made from it has not started yet: its first start copies the template)',
      tags, security, params: MigrationParams, response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    const partnerId = partnerOf(req);
    const t = await templates.get(partnerId, req.params.id);
    await templates.delete(partnerId, t.id);
    await events.recordAfter({ type: 'template.deleted', partnerId, data: { template_id: t.id, name: t.name } });
    return reply.code(204).send(null);
  });
};
