import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Partners } from '../../src/partners.ts';
import { errorResponses } from '../schemas.ts';

const Whoami = Type.Object({
  kind: Type.Union([Type.Literal('operator'), Type.Literal('partner')]),
  key_id: Type.String(),
  partner_id: Type.Union([Type.String(), Type.Null()]),
  partner_name: Type.Union([Type.String(), Type.Null()]),
});

/** What the presented key is: the console signs in with it (one call that any valid key may make). */
export const whoamiRoutes: FastifyPluginAsyncTypebox<{ partners: Partners }> = async (app, { partners }) => {
  app.get('/v1/whoami', {
    schema: { summary: 'The kind of the presented key (operator or partner) and its id', tags: ['keys'], security: [{ apiKey: [] }], response: { 200: Whoami, ...errorResponses } },
  }, async (req) => {
    const p = req.principal!;
    if (p.kind === 'operator') return { kind: 'operator' as const, key_id: p.keyId, partner_id: null, partner_name: null };
    const partner = await partners.get(p.partnerId);
    return { kind: 'partner' as const, key_id: p.keyId, partner_id: partner.id, partner_name: partner.name };
  });
};
