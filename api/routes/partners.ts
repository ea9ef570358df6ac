import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Partner as PartnerRecord, Partners } from '../../src/partners.ts';
import { checkFloorFitsHost, parseRange, rangeView } from '../../src/autoscaling.ts';
import { requireOperator } from '../auth.ts';
import { IdParams, Partner, PartnerCreate, PartnerList, PartnerUpdate, PartnerWithKey, errorResponses } from '../schemas.ts';

const view = (p: PartnerRecord) => ({
  id: p.id, name: p.name, created_at: p.createdAt.toISOString(), default_autoscaling: p.defaultAutoscaling && rangeView(p.defaultAutoscaling),
});
const security = [{ apiKey: [] }];

/** Operator routes: partners and their API keys. */
export const partnerRoutes: FastifyPluginAsyncTypebox<{ partners: Partners }> = async (app, { partners }) => {
  app.addHook('onRequest', async (req) => requireOperator(req));

  app.post('/v1/partners', {
    schema: {
      summary: 'Create a partner; its API key is shown in this answer only',
      tags: ['partners'], security, body: PartnerCreate, response: { 201: PartnerWithKey, ...errorResponses },
    },
  }, async (req, reply) => {
    const { partner, apiKey } = await partners.create(req.body.name);
    return reply.code(201).send({ ...view(partner), api_key: apiKey });
  });

  app.get('/v1/partners', {
    schema: { summary: 'List partners', tags: ['partners'], security, response: { 200: PartnerList, ...errorResponses } },
  }, async () => ({ partners: (await partners.list()).map(view) }));

  app.patch('/v1/partners/:id', {
    schema: {
      summary: "Change a partner's defaults for its databases: the history retention, the autoscaling range",
      tags: ['partners'], security, params: IdParams, body: PartnerUpdate, response: { 200: Partner, ...errorResponses },
    },
  }, async (req) => {
    const { default_history_retention_seconds: retention, default_autoscaling: range } = req.body;
    // Checked before anything changes: a bad range changes nothing.
    const parsed = range === undefined || range === null ? range : parseRange(range, 'default_autoscaling');
    if (parsed) checkFloorFitsHost(parsed, 'default_autoscaling');
    let partner = await partners.get(req.params.id);
    if (retention !== undefined) partner = await partners.setDefaultHistoryRetention(req.params.id, retention);
    if (parsed !== undefined) partner = await partners.setDefaultAutoscaling(req.params.id, parsed);
    return view(partner);
  });

  app.delete('/v1/partners/:id', {
    schema: {
      summary: 'Delete a partner, its keys, and every database of its users (computes stopped, data removed)',
      tags: ['partners'], security, params: IdParams, response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    await partners.delete(req.params.id);
    return reply.code(204).send(null);
  });

  app.post('/v1/partners/:id/keys', {
    schema: {
      summary: "Rotate a partner's API key: the new key is shown once, earlier keys stop working at once",
      tags: ['partners'], security, params: IdParams, response: { 201: PartnerWithKey, ...errorResponses },
    },
  }, async (req, reply) => {
    const { partner, apiKey } = await partners.rotateKey(req.params.id);
    return reply.code(201).send({ ...view(partner), api_key: apiKey });
  });
};
