import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { EventRecord, Events } from '../../src/events/events.ts';
import { EVENT_TYPES } from '../../src/events/types.ts';
import { BadRequestError } from '../../src/errors.ts';
import { ownerOf } from '../auth.ts';
import { EventList, EventListQuery, EventTypes, type EventView } from '../event-schemas.ts';
import { errorResponses } from '../schemas.ts';

const security = [{ apiKey: [] }];
const tags = ['events'];

export const eventView = (e: EventRecord): EventView => ({
  id: e.id, type: e.type, created_at: e.createdAt.toISOString(), partner_id: e.partnerId, database_id: e.databaseId, data: e.data,
});

/** What happened, in order, with a cursor: a partner's own events; the operator's key sees every partner's and its own. */
export const eventRoutes: FastifyPluginAsyncTypebox<{ events: Events }> = async (app, { events }) => {
  app.get('/v1/events', {
    schema: {
      summary: 'Events in the order they happened, after the cursor (poll with next_cursor); the same events webhooks deliver', tags, security,
      querystring: EventListQuery, response: { 200: EventList, ...errorResponses },
    },
  }, async (req) => {
    const owner = ownerOf(req);
    const q = req.query;
    if (owner !== null && q.partner_id !== undefined) throw new BadRequestError('partner_id: only the operator key may name a partner');
    const page = await events.list({
      partnerId: owner ?? q.partner_id, databaseId: q.database_id, types: q.type?.split(',').map((t) => t.trim()).filter(Boolean),
      since: q.since === undefined ? undefined : new Date(q.since), cursor: q.cursor, limit: q.limit ?? 100,
    });
    return { events: page.items.map(eventView), next_cursor: page.nextCursor };
  });

  app.get('/v1/events/types', {
    schema: { summary: 'Every event type, what it means, and whether only the operator sees it', tags, security, response: { 200: EventTypes, ...errorResponses } },
  }, async () => ({
    types: Object.entries(EVENT_TYPES).map(([type, description]) => ({ type, description, operator_only: type.startsWith('node.') })),
  }));
};
