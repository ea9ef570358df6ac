import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Catalog } from '../../src/catalog/catalog.ts';
import type { Events } from '../../src/events/events.ts';
import type { RecentFailures } from '../../src/failures.ts';
import { parseRange, partnerTotals } from '../../src/metering/consumption.ts';
import type { UsageTracker } from '../../src/metering/usage-tracker.ts';
import type { Partners } from '../../src/partners.ts';
import type { Webhooks } from '../../src/webhooks/webhooks.ts';
import { requireOperator } from '../auth.ts';
import { Event } from '../event-schemas.ts';
import { errorResponses } from '../schemas.ts';
import { eventView } from './events.ts';

export interface OperatorRoutesOptions {
  catalog: Catalog;
  usage: UsageTracker;
  partners: Partners;
  events: Events;
  webhooks: Webhooks;
  failures: RecentFailures;
}

const security = [{ apiKey: [] }];
const tags = ['operator'];
const Usage = Type.Record(Type.String(), Type.Number());
const Range = Type.Object({
  from: Type.Optional(Type.String({ maxLength: 64, description: 'ISO 8601; default: the start of this month' })),
  to: Type.Optional(Type.String({ maxLength: 64, description: 'default: now' })),
});
const Failures = Type.Object({
  refused_logins: Type.Object({
    since: Type.String({ format: 'date-time' }),
    by_reason: Type.Record(Type.String(), Type.Integer(), { description: 'on this gateway in the last hour: unknown_endpoint, unknown_role, wrong_password, token_expired, token_foreign, quota, limits, …' }),
    recent: Type.Array(Type.Object({
      at: Type.String(), reason: Type.String(), why: Type.String(), endpoint: Type.Optional(Type.String()), role: Type.Optional(Type.String()), client: Type.Optional(Type.String()),
    })),
  }),
  failed_wakes: Type.Array(Event, { description: 'database.wake_failed events of the last day, newest first (every gateway)' }),
  webhook_failures: Type.Array(Type.Object({
    delivery_id: Type.Integer(), webhook_id: Type.String(), partner_id: Type.Union([Type.String(), Type.Null()]), url: Type.String(), event_type: Type.String(),
    state: Type.String(), attempts: Type.Integer(), last_status: Type.Union([Type.Integer(), Type.Null()]), last_error: Type.Union([Type.String(), Type.Null()]),
    next_attempt_at: Type.Union([Type.String(), Type.Null()]),
  })),
});

/** The operator console's views: usage per partner, and what failed lately. */
export const operatorRoutes: FastifyPluginAsyncTypebox<OperatorRoutesOptions> = async (app, o) => {
  app.addHook('onRequest', async (req) => requireOperator(req));

  app.get('/v1/usage/partners', {
    schema: {
      summary: "Each partner's usage over the range (default: this month): amounts summed, storage as held now (operator key)", tags, security,
      querystring: Range, response: { 200: Type.Object({ from: Type.String(), to: Type.String(), partners: Type.Array(Type.Object({ partner_id: Type.String(), name: Type.String(), usage: Usage })) }), ...errorResponses },
    },
  }, async (req) => {
    const range = parseRange(req.query.from, req.query.to, 'monthly');
    const totals = await partnerTotals(o.usage, o.catalog, range);
    const partners = await o.partners.list();
    return {
      from: range.from.toISOString(), to: range.to.toISOString(),
      partners: partners.map((p) => ({ partner_id: p.id, name: p.name, usage: totals.get(p.id) ?? {} })),
    };
  });

  app.get('/v1/failures', {
    schema: {
      summary: "What failed lately: refused logins by reason (this gateway), failed wakes, webhook deliveries failing (operator key)", tags, security,
      response: { 200: Failures, ...errorResponses },
    },
  }, async () => {
    const now = Date.now();
    const logins = o.failures.refusedLogins(now);
    const wakes = await o.events.list({ types: ['database.wake_failed'], since: new Date(now - 86_400_000), limit: 1000 });
    const failing = await o.webhooks.failing(50);
    return {
      refused_logins: {
        since: new Date(now - 3_600_000).toISOString(), by_reason: logins.byReason,
        recent: logins.recent.map((l) => ({ ...l, at: l.at.toISOString() })),
      },
      failed_wakes: wakes.items.reverse().slice(0, 50).map(eventView),
      webhook_failures: failing.map((d) => ({
        delivery_id: d.id, webhook_id: d.webhookId, partner_id: d.partnerId, url: d.url, event_type: d.eventType, state: d.state,
        attempts: d.attempts, last_status: d.lastStatus, last_error: d.lastError, next_attempt_at: d.nextAttemptAt?.toISOString() ?? null,
      })),
    };
  });
};
