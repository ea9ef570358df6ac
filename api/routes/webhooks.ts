import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Delivery, Webhook as WebhookRecord, Webhooks } from '../../src/webhooks/webhooks.ts';
import { ownerOf } from '../auth.ts';
import {
  DeliveryList, DeliveryListQuery, DeliveryParams, DeliveryWithAttempts, Webhook, WebhookCreate, WebhookCreated, WebhookList, WebhookParams,
} from '../event-schemas.ts';
import { errorResponses } from '../schemas.ts';

const security = [{ apiKey: [] }];
const tags = ['webhooks'];
const iso = (d: Date | null) => (d ? d.toISOString() : null);

const view = (w: WebhookRecord) => ({ id: w.id, url: w.url, events: w.events, description: w.description, created_at: w.createdAt.toISOString() });
const deliveryView = (d: Delivery) => ({
  id: d.id, webhook_id: d.webhookId, event_id: d.eventId, event_type: d.eventType, database_id: d.databaseId, state: d.state, attempts: d.attempts,
  next_attempt_at: iso(d.nextAttemptAt), last_status: d.lastStatus, last_error: d.lastError, created_at: d.createdAt.toISOString(), finished_at: iso(d.finishedAt),
});

/** A partner's webhook endpoints (the operator's key has its own, which hear every partner's events) and their deliveries. */
export const webhookRoutes: FastifyPluginAsyncTypebox<{ webhooks: Webhooks }> = async (app, { webhooks }) => {
  app.post('/v1/webhooks', {
    schema: {
      summary: 'Register an endpoint for events: deliveries are signed (Standard Webhooks), retried for over a day, in order per database; the secret is in this answer only',
      tags, security, body: WebhookCreate, response: { 201: WebhookCreated, ...errorResponses },
    },
  }, async (req, reply) => {
    const { webhook, secret } = await webhooks.create(ownerOf(req), req.body);
    return reply.code(201).send({ ...view(webhook), secret });
  });

  app.get('/v1/webhooks', {
    schema: { summary: 'List webhook endpoints', tags, security, response: { 200: WebhookList, ...errorResponses } },
  }, async (req) => ({ webhooks: (await webhooks.list(ownerOf(req))).map(view) }));

  app.get('/v1/webhooks/:id', {
    schema: { summary: 'Get a webhook endpoint', tags, security, params: WebhookParams, response: { 200: Webhook, ...errorResponses } },
  }, async (req) => view(await webhooks.get(ownerOf(req), req.params.id)));

  app.delete('/v1/webhooks/:id', {
    schema: {
      summary: 'Remove a webhook endpoint and its deliveries (pending ones are not sent)', tags, security, params: WebhookParams,
      response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    await webhooks.delete(ownerOf(req), req.params.id);
    return reply.code(204).send(null);
  });

  app.get('/v1/webhooks/:id/deliveries', {
    schema: {
      summary: "An endpoint's deliveries, newest first", tags, security, params: WebhookParams, querystring: DeliveryListQuery,
      response: { 200: DeliveryList, ...errorResponses },
    },
  }, async (req) => {
    const page = await webhooks.deliveries(ownerOf(req), req.params.id, {
      state: req.query.state, before: req.query.cursor === undefined ? undefined : Number(req.query.cursor), limit: req.query.limit ?? 100,
    });
    return { deliveries: page.items.map(deliveryView), next_cursor: page.nextCursor === null ? null : String(page.nextCursor) };
  });

  app.get('/v1/webhooks/:id/deliveries/:delivery', {
    schema: {
      summary: 'One delivery with every attempt (time, duration, HTTP status or error, gateway)', tags, security, params: DeliveryParams,
      response: { 200: DeliveryWithAttempts, ...errorResponses },
    },
  }, async (req) => {
    const { delivery, attempts } = await webhooks.delivery(ownerOf(req), req.params.id, req.params.delivery);
    return {
      ...deliveryView(delivery),
      attempt_log: attempts.map((a) => ({
        attempt: a.attempt, started_at: a.startedAt.toISOString(), duration_ms: a.durationMs, status: a.status, error: a.error, node_id: a.nodeId,
      })),
    };
  });
};
