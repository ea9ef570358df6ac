/** Schemas of events, webhooks, the audit log and the operator's views. */
import { type Static, Type } from 'typebox';
import { EVENT_TYPES } from '../src/events/types.ts';

const Timestamp = Type.String({ format: 'date-time' });
const Text = (maxLength: number, description?: string) => Type.String({ minLength: 1, maxLength, pattern: '^[^\\u0000-\\u001f\\u007f]*$', ...(description ? { description } : {}) });
const Limit = Type.Integer({ minimum: 1, maximum: 1000, default: 100 });
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const Event = Type.Object({
  id: Type.String({ description: 'stable: the same event always has this id (it is also the webhook-id header of its deliveries)' }),
  type: Type.String({ description: `resource.verb: ${Object.keys(EVENT_TYPES).join(', ')}` }),
  created_at: Timestamp,
  partner_id: Nullable(Type.String()),
  database_id: Nullable(Type.String()),
  data: Type.Record(Type.String(), Type.Unknown()),
});

export const EventList = Type.Object({
  events: Type.Array(Event),
  next_cursor: Nullable(Type.String({ description: 'pass as cursor to get what happened next (also when this page is empty: keep polling with it)' })),
});

export const EventListQuery = Type.Object({
  cursor: Type.Optional(Text(256)),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'without a cursor: start at this time (default: the oldest event kept)' })),
  type: Type.Optional(Text(512, 'comma-separated types or patterns (database.*)')),
  database_id: Type.Optional(Text(64)),
  partner_id: Type.Optional(Text(64, "operator key: one partner's events")),
  limit: Type.Optional(Limit),
});

export const EventTypes = Type.Object({
  types: Type.Array(Type.Object({ type: Type.String(), description: Type.String(), operator_only: Type.Boolean() })),
});

export const WebhookCreate = Type.Object({
  url: Text(2048, 'https:// (http:// and internal addresses only with PGFLEET_WEBHOOK_ALLOW_INTERNAL)'),
  events: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 64, description: 'event types, patterns such as database.*, or *' }),
  secret: Type.Optional(Text(200, 'whsec_ and base64 of 24 to 64 bytes; generated when left out')),
  description: Type.Optional(Text(256)),
}, { additionalProperties: false });

const webhookFields = {
  id: Type.String(),
  url: Type.String(),
  events: Type.Array(Type.String()),
  description: Nullable(Type.String()),
  created_at: Timestamp,
};
export const Webhook = Type.Object(webhookFields);
export const WebhookCreated = Type.Object({
  ...webhookFields,
  secret: Type.String({ description: 'the signing secret (Standard Webhooks, whsec_…): shown in this answer only' }),
});
export const WebhookList = Type.Object({ webhooks: Type.Array(Webhook) });

export const Delivery = Type.Object({
  id: Type.Integer(),
  webhook_id: Type.String(),
  event_id: Type.String(),
  event_type: Type.String(),
  database_id: Nullable(Type.String()),
  state: Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')], { description: 'failed: every attempt of the retry schedule failed' }),
  attempts: Type.Integer(),
  next_attempt_at: Nullable(Timestamp),
  last_status: Type.Union([Type.Integer(), Type.Null()]),
  last_error: Nullable(Type.String()),
  created_at: Timestamp,
  finished_at: Nullable(Timestamp),
});
export const DeliveryList = Type.Object({ deliveries: Type.Array(Delivery), next_cursor: Nullable(Type.String()) });
export const DeliveryWithAttempts = Type.Object({
  ...Delivery.properties,
  attempt_log: Type.Array(Type.Object({
    attempt: Type.Integer(), started_at: Timestamp, duration_ms: Type.Integer(), status: Type.Union([Type.Integer(), Type.Null()]),
    error: Nullable(Type.String()), node_id: Type.String({ description: 'the gateway that made the attempt' }),
  })),
});
export const DeliveryListQuery = Type.Object({
  state: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')])),
  cursor: Type.Optional(Type.String({ pattern: '^\\d{1,19}$' })),
  limit: Type.Optional(Limit),
});
export const WebhookParams = Type.Object({ id: Text(64) });
export const DeliveryParams = Type.Object({ id: Text(64), delivery: Type.Integer({ minimum: 1 }) });

export const AuditEntry = Type.Object({
  at: Timestamp,
  partner_id: Nullable(Type.String()),
  actor: Type.String({ description: 'operator or partner' }),
  key_id: Type.String({ description: 'the API key that made the call (its id; operator for the operator key)' }),
  client: Nullable(Type.String({ description: 'x-pgfleet-client, else the user agent' })),
  action: Type.String({ description: 'the operationId (createDatabase, resetPasswordDatabaseRole, …)' }),
  method: Type.String(),
  route: Type.String(),
  target: Nullable(Type.String()),
  request_id: Type.String({ description: 'also the answer\'s x-request-id header' }),
  source_address: Type.String(),
  status: Type.Integer(),
  result: Type.String({ description: 'ok, or the error code' }),
  request: Type.Unknown({ description: 'the request body, secrets replaced' }),
});
export const AuditList = Type.Object({ entries: Type.Array(AuditEntry), next_cursor: Nullable(Type.String()) });
export const AuditQuery = Type.Object({
  key_id: Type.Optional(Text(64)),
  action: Type.Optional(Text(64)),
  target: Type.Optional(Text(200)),
  result: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('error')])),
  from: Type.Optional(Type.String({ format: 'date-time' })),
  to: Type.Optional(Type.String({ format: 'date-time' })),
  partner_id: Type.Optional(Text(64, "operator key: one partner's entries")),
  cursor: Type.Optional(Type.String({ pattern: '^\\d{1,19}$' })),
  limit: Type.Optional(Limit),
});

export type EventView = Static<typeof Event>;
