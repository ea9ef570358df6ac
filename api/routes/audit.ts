import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AuditLog } from '../../src/audit.ts';
import { BadRequestError } from '../../src/errors.ts';
import { ownerOf } from '../auth.ts';
import { AuditList, AuditQuery } from '../event-schemas.ts';
import { errorResponses } from '../schemas.ts';

/** The audit log: a partner sees the entries about itself, the operator every entry. */
export const auditRoutes: FastifyPluginAsyncTypebox<{ audit: AuditLog }> = async (app, { audit }) => {
  app.get('/v1/audit', {
    schema: {
      summary: 'Every API mutation, newest first: who (key id), what, on what, from where, how it ended; kept PGFLEET_AUDIT_RETENTION',
      tags: ['audit'], security: [{ apiKey: [] }], querystring: AuditQuery, response: { 200: AuditList, ...errorResponses },
    },
  }, async (req) => {
    const owner = ownerOf(req);
    const q = req.query;
    if (owner !== null && q.partner_id !== undefined) throw new BadRequestError('partner_id: only the operator key may name a partner');
    const page = await audit.list({
      partnerId: owner ?? q.partner_id, keyId: q.key_id, action: q.action, target: q.target, result: q.result,
      from: q.from === undefined ? undefined : new Date(q.from), to: q.to === undefined ? undefined : new Date(q.to), cursor: q.cursor, limit: q.limit ?? 100,
    });
    return {
      entries: page.items.map((e) => ({
        at: e.at.toISOString(), partner_id: e.partnerId, actor: e.actor, key_id: e.keyId, client: e.client, action: e.action, method: e.method,
        route: e.route, target: e.target, request_id: e.requestId, source_address: e.sourceAddress, status: e.status, result: e.result, request: e.request,
      })),
      next_cursor: page.nextCursor,
    };
  });
};
