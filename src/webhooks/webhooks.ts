import crypto from 'node:crypto';
import type { Catalog } from '../catalog/catalog.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import { EVENT_PATTERNS } from '../events/types.ts';
import { type OutboundUrlRules, checkOutboundUrl } from '../outbound-address.ts';
import type { SecretBox } from '../secret-box.ts';
import { checkSecret, generateSecret } from './signing.ts';

/** null: the operator's webhooks (they hear every partner's events, and the operator's own). */
export type Owner = string | null;

export interface Webhook {
  id: string;
  partnerId: string | null;
  url: string;
  events: string[];
  description: string | null;
  createdAt: Date;
}

export interface NewWebhook {
  url: string;
  events: string[];
  secret?: string;
  description?: string;
}

export interface DeliveryAttempt {
  attempt: number;
  startedAt: Date;
  durationMs: number;
  status: number | null;
  error: string | null;
  nodeId: string;
}

export interface Delivery {
  id: number;
  webhookId: string;
  eventId: string;
  eventType: string;
  databaseId: string | null;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: Date | null;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: Date;
  finishedAt: Date | null;
}

/** Webhooks one owner may have; more is a 409. */
const MAX_WEBHOOKS = 20;
const MAX_URL = 2048;

const toWebhook = (r: any): Webhook => ({
  id: r.id, partnerId: r.partner_id, url: r.url, events: r.event_types, description: r.description, createdAt: r.created_at,
});

const toDelivery = (r: any): Delivery => ({
  id: Number(r.id), webhookId: r.webhook_id, eventId: r.event_id, eventType: r.type, databaseId: r.database_id, state: r.state,
  attempts: r.attempts, nextAttemptAt: r.state === 'pending' ? r.next_attempt_at : null, lastStatus: r.last_status, lastError: r.last_error,
  createdAt: r.created_at, finishedAt: r.finished_at,
});

const OWNED = (n: number) => `(w.partner_id = $${n} OR ($${n}::text IS NULL AND w.partner_id IS NULL))`;

/** A secret is sealed for its own webhook: copied to another row, it does not open. */
export const secretContext = (webhookId: string) => `webhook:${webhookId}`;

/** Partners' webhook endpoints and their deliveries. The signing secret is shown once and kept sealed. */
export class Webhooks {
  constructor(private readonly catalog: Catalog, private readonly box: SecretBox, private readonly rules: OutboundUrlRules) {}

  async create(owner: Owner, input: NewWebhook): Promise<{ webhook: Webhook; secret: string }> {
    if (input.url.length > MAX_URL) throw new BadRequestError(`url: at most ${MAX_URL} characters`);
    const url = checkOutboundUrl('url', input.url, this.rules);
    const events = [...new Set(input.events)];
    if (events.length === 0) throw new BadRequestError('events: name at least one event type, a pattern such as database.*, or *');
    const unknown = events.find((e) => !EVENT_PATTERNS.includes(e));
    if (unknown !== undefined) throw new BadRequestError(`events: "${unknown}" is not an event type or pattern (see GET /v1/events/types)`);
    const secret = input.secret === undefined ? generateSecret() : checkSecret(input.secret);
    const id = `wh_${crypto.randomBytes(8).toString('hex')}`;
    const webhook = await this.catalog.tx(async (c) => {
      // Serializes creates of one owner, so the cap holds under concurrent requests.
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`webhooks:${owner ?? 'operator'}`]);
      const { rows: [{ n }] } = await c.query(`SELECT count(*)::int AS n FROM webhooks w WHERE ${OWNED(1)}`, [owner]);
      if (n >= MAX_WEBHOOKS) throw new ConflictError(`at most ${MAX_WEBHOOKS} webhooks; delete one first`);
      const { rows } = await c.query(
        `INSERT INTO webhooks (id, partner_id, url, event_types, secret_sealed, description) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
        [id, owner, url, events, this.box.seal(secret, secretContext(id)), input.description ?? null]);
      return toWebhook(rows[0]);
    });
    return { webhook, secret };
  }

  async list(owner: Owner): Promise<Webhook[]> {
    const { rows } = await this.catalog.query(`SELECT * FROM webhooks w WHERE ${OWNED(1)} ORDER BY created_at, id`, [owner]);
    return rows.map(toWebhook);
  }

  /** The owner's webhook; another owner's is "not found", like a missing one. */
  async get(owner: Owner, id: string): Promise<Webhook> {
    const { rows } = await this.catalog.query(`SELECT * FROM webhooks w WHERE w.id = $2 AND ${OWNED(1)}`, [owner, id]);
    if (!rows[0]) throw new NotFoundError(`webhook "${id}" not found`);
    return toWebhook(rows[0]);
  }

  /** Removes the webhook with its deliveries, pending ones included. */
  async delete(owner: Owner, id: string): Promise<void> {
    const { rowCount } = await this.catalog.query(`DELETE FROM webhooks w WHERE w.id = $2 AND ${OWNED(1)}`, [owner, id]);
    if (!rowCount) throw new NotFoundError(`webhook "${id}" not found`);
  }

  /** Its deliveries, newest first, before the cursor (a delivery id). */
  async deliveries(owner: Owner, webhookId: string, opts: { state?: string; before?: number; limit: number }): Promise<{ items: Delivery[]; nextCursor: number | null }> {
    await this.get(owner, webhookId);
    const { rows } = await this.catalog.query(
      `SELECT d.*, e.id AS event_id, e.type, e.database_id FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq
        WHERE d.webhook_id = $1 AND ($2::text IS NULL OR d.state = $2) AND ($3::int8 IS NULL OR d.id < $3)
        ORDER BY d.id DESC LIMIT $4`,
      [webhookId, opts.state ?? null, opts.before ?? null, opts.limit + 1]);
    const items = rows.slice(0, opts.limit).map(toDelivery);
    return { items, nextCursor: rows.length > opts.limit ? items[items.length - 1]!.id : null };
  }

  /** One delivery with every attempt. */
  async delivery(owner: Owner, webhookId: string, id: number): Promise<{ delivery: Delivery; attempts: DeliveryAttempt[] }> {
    await this.get(owner, webhookId);
    const { rows } = await this.catalog.query(
      `SELECT d.*, e.id AS event_id, e.type, e.database_id FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq
        WHERE d.webhook_id = $1 AND d.id = $2`, [webhookId, id]);
    if (!rows[0]) throw new NotFoundError(`delivery ${id} of webhook "${webhookId}" not found`);
    const attempts = await this.catalog.query('SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt', [id]);
    return {
      delivery: toDelivery(rows[0]),
      attempts: attempts.rows.map((a) => ({
        attempt: a.attempt, startedAt: a.started_at, durationMs: a.duration_ms, status: a.status, error: a.error, nodeId: a.node_id,
      })),
    };
  }

  /** Deliveries whose last attempt failed (retries pending, or given up), newest first, of every owner: the operator's view. */
  async failing(limit: number): Promise<(Delivery & { url: string; partnerId: string | null })[]> {
    const { rows } = await this.catalog.query(
      `SELECT d.*, e.id AS event_id, e.type, e.database_id, w.url, w.partner_id FROM webhook_deliveries d
         JOIN events e ON e.seq = d.event_seq JOIN webhooks w ON w.id = d.webhook_id
        WHERE d.state = 'failed' OR d.last_error IS NOT NULL ORDER BY d.finished_at DESC NULLS FIRST, d.id DESC LIMIT $1`, [limit]);
    return rows.map((r) => ({ ...toDelivery(r), url: r.url, partnerId: r.partner_id }));
  }
}
