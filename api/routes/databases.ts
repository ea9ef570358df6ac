import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { POOLER_SUFFIX, type PublicAddress, connectionInfo } from '../../src/connection-uri.ts';
import { type CuRange, parseRange, rangeView } from '../../src/autoscaling.ts';
import type { Catalog } from '../../src/catalog/catalog.ts';
import { AutoscalingError } from '../../src/errors.ts';
import { type Databases } from '../../src/databases.ts';
import { type DatabaseRecord, type NewDatabase, unavailableReason } from '../../src/database-records.ts';
import type { PartnerTemplates } from '../../src/partner-templates.ts';
import type { Events, NewEvent } from '../../src/events/events.ts';
import { searchDatabases } from '../../src/operator-view.ts';
import { databaseScope, partnerOf } from '../auth.ts';
import { caCertificateUrl } from '../ca-certificate.ts';
import { type IdempotencyStore, fingerprint } from '../idempotency.ts';
import {
  Database, DatabaseCreate, type DatabaseCreatedView, DatabaseCreated, DatabaseList, DatabaseListQuery, DatabaseUpdate,
  type DatabaseView, IdParams, IdempotencyHeaders, RoleCreate, RoleCredentials, type RoleCredentialsView, RoleParams, errorResponses,
} from '../schemas.ts';

export interface DatabaseRoutesOptions {
  databases: Databases;
  /** A database made from a partner template (`template`). */
  templates: PartnerTemplates;
  /** Where database.* and role.* events are recorded, right after each change. */
  events: Events;
  catalog: Catalog;
  idempotency: IdempotencyStore;
  publicAddress: PublicAddress;
  /** PGFLEET_HISTORY_RETENTION: in effect where neither the database nor its partner sets one. */
  defaultHistoryRetentionSeconds: number;
  /** PGFLEET_AUTOSCALING: the range of a database that names none (nor its partner). */
  defaultAutoscaling: CuRange;
  /** The version (17.10, or 17 where no more is known) that a region's computes of a major run. */
  postgresVersionOf: (region: string, major: number) => string;
}

const security = [{ apiKey: [] }];

/** `autoscaling`, or `compute_units` as a fixed range (min = max); both at once is a 400. undefined = not named. */
function rangeOfBody(body: { compute_units?: number | null; autoscaling?: unknown }): CuRange | null | undefined {
  if (body.autoscaling !== undefined && body.compute_units !== undefined) {
    throw new AutoscalingError('autoscaling: give either autoscaling or compute_units, not both');
  }
  if (body.compute_units !== undefined) return body.compute_units === null ? null : { minCu: body.compute_units, maxCu: body.compute_units };
  if (body.autoscaling === undefined || body.autoscaling === null) return body.autoscaling as null | undefined;
  return parseRange(body.autoscaling);
}
const tags = ['databases'];

/** A partner's routes: its users' databases. Another partner's database answers 404, like a missing one. */
export const databaseRoutes: FastifyPluginAsyncTypebox<DatabaseRoutesOptions> = async (app, opts) => {
  const { databases, templates, events, catalog, idempotency, publicAddress, defaultHistoryRetentionSeconds, defaultAutoscaling, postgresVersionOf } = opts;
  const eventOf = (db: DatabaseRecord, type: NewEvent['type'], data: Record<string, unknown> = {}): NewEvent =>
    ({ type, partnerId: db.partnerId, databaseId: db.id, data: { user_id: db.userId, name: db.name, ...data } });
  const record = (db: DatabaseRecord, type: NewEvent['type'], data: Record<string, unknown> = {}) => events.recordAfter(eventOf(db, type, data));

  /** `caUrl`: where the asking client fetches the CA (caCertificateUrl of its request). */
  const view = (db: DatabaseRecord, caUrl: string | null): DatabaseView => {
    const compute = databases.stateOf(db);
    const lastActive = compute.lastActiveAt;
    const range = db.autoscaling ?? defaultAutoscaling;
    // The size its node recorded; a compute that just started, before that record, holds its floor.
    const currentCu = compute.state !== 'running' ? 0 : db.recordedCu || range.minCu;
    return {
      id: db.id,
      partner_id: db.partnerId,
      user_id: db.userId,
      name: db.name,
      region: db.region,
      pg_version: db.pgVersion,
      postgres_version: postgresVersionOf(db.region, db.pgVersion),
      endpoint_id: db.endpointId,
      host: `${db.endpointId}.${publicAddress.domain}`,
      port: publicAddress.port,
      role: db.ownerRole,
      database: db.databaseName,
      roles: db.roles,
      suspend_timeout_seconds: db.suspendTimeoutSeconds,
      history_retention_seconds: db.historyRetentionSeconds ?? defaultHistoryRetentionSeconds,
      quotas: db.quotas,
      pool_size: db.poolSize,
      compute_units: range.maxCu,
      autoscaling: rangeView(range),
      current_cu: currentCu,
      durability: db.durability,
      pooled_host: `${db.endpointId}${POOLER_SUFFIX}.${publicAddress.domain}`,
      ca_certificate_url: caUrl,
      state: db.status === 'ready' ? compute.state : db.status,
      ...(db.status === 'failed' ? { error: unavailableReason(db.id, db.status, db.statusDetail) } : {}),
      connections: compute.connections,
      last_active_at: lastActive ? lastActive.toISOString() : null,
      labels: db.labels,
      template: db.templateId,
      created_at: db.createdAt.toISOString(),
    };
  };

  /** What only the answer that makes a password shows: the password and the URIs that carry it. */
  const secrets = (db: DatabaseRecord, role: string, password: string) => {
    const { host: _host, port: _port, ...uris } = connectionInfo(publicAddress, db.endpointId, role, password, db.databaseName);
    return { password, ...uris };
  };

  const credentials = (db: DatabaseRecord, role: string, password: string, caUrl: string | null): RoleCredentialsView => ({
    database_id: db.id, role, host: `${db.endpointId}.${publicAddress.domain}`, port: publicAddress.port, database: db.databaseName,
    ca_certificate_url: caUrl, ...secrets(db, role, password),
  });
  const caUrl = (req: FastifyRequest) => caCertificateUrl(req, publicAddress);

  app.post('/v1/databases', {
    schema: {
      summary: "Create a database for one of the partner's users; the password is in this answer only",
      description: 'Send an Idempotency-Key header to make retries safe: the same key and body return the first answer (one database); the same key with another body answers 409. Keys are kept 24 hours.',
      tags, security, headers: IdempotencyHeaders, body: DatabaseCreate, response: { 201: DatabaseCreated, ...errorResponses },
    },
  }, async (req, reply) => {
    const partnerId = partnerOf(req);
    const { body } = req;
    const create = async () => {
      const input: NewDatabase = {
        partnerId,
        userId: body.user_id,
        name: body.name,
        region: body.region,
        roleName: body.role_name,
        databaseName: body.database_name,
        suspendTimeoutSeconds: body.suspend_timeout_seconds,
        historyRetentionSeconds: body.history_retention_seconds,
        quotas: body.quotas,
        poolSize: body.pool_size,
        autoscaling: rangeOfBody(body),
        durability: body.durability,
        pgVersion: body.pg_version,
        labels: body.labels,
      };
      const { database, password } = await databases.create(body.template === undefined ? input : await templates.newDatabase(input, body.template));
      // Recorded together: one statement.
      const happened = [eventOf(database, 'database.created', { region: database.region, pg_version: database.pgVersion })];
      if (database.status === 'ready') happened.push(eventOf(database, 'database.ready', { region: database.region }));
      await events.recordAfter(...happened);
      const created: DatabaseCreatedView = { ...view(database, caUrl(req)), ...secrets(database, database.ownerRole, password) };
      return { status: 201, body: created };
    };
    const key = req.headers['idempotency-key'];
    if (key === undefined) {
      const answer = await create();
      return reply.code(answer.status).send(answer.body as DatabaseCreatedView);
    }
    const answer = await idempotency.run(partnerId, key, fingerprint(req.method, req.routeOptions.url ?? req.url, body), create);
    if (answer.replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(answer.status).send(answer.body as DatabaseCreatedView);
  });

  app.get('/v1/databases', {
    schema: {
      summary: "List the partner's databases, oldest first, a page at a time",
      tags, security, querystring: DatabaseListQuery, response: { 200: DatabaseList, ...errorResponses },
    },
  }, async (req) => {
    const { user_id: userId, name: nameContains, limit, cursor, q, partner_id: partnerId } = req.query;
    if (q !== undefined || req.principal?.kind === 'operator') {
      // A search (and the operator's list across partners): a page of ids, then each database as its partner sees it.
      const owner = req.principal?.kind === 'operator' ? partnerId : partnerOf(req);
      const page = await searchDatabases(catalog, { q: q ?? userId, partnerId: owner, limit: limit ?? 100, cursor });
      const found = await Promise.all(page.items.map((d) => databases.get(d.partnerId, d.id).catch(() => undefined)));
      return { databases: found.filter((db) => db !== undefined).map((db) => view(db, caUrl(req))), next_cursor: page.nextCursor };
    }
    const page = await databases.list(partnerOf(req), { userId, nameContains, limit, cursor });
    return { databases: page.items.map((db) => view(db, caUrl(req))), next_cursor: page.nextCursor ?? null };
  });

  app.get('/v1/databases/:id', {
    schema: { summary: 'Get a database', tags, security, params: IdParams, response: { 200: Database, ...errorResponses } },
  }, async (req) => view(await databases.get(await databaseScope(req, req.params.id, catalog), req.params.id), caUrl(req)));

  app.patch('/v1/databases/:id', {
    schema: {
      summary: 'Change the name, the suspend timeout, the history retention or quotas (quotas merge: named ones change, null = unlimited)',
      tags, security, params: IdParams, body: DatabaseUpdate, response: { 200: Database, ...errorResponses },
    },
  }, async (req) => {
    const { name, suspend_timeout_seconds, history_retention_seconds, quotas, pool_size, durability, labels } = req.body;
    const db = await databases.update(partnerOf(req), req.params.id, {
      name, suspendTimeoutSeconds: suspend_timeout_seconds, historyRetentionSeconds: history_retention_seconds, quotas, poolSize: pool_size,
      autoscaling: rangeOfBody(req.body), durability, labels,
    });
    await record(db, 'database.updated', { changes: req.body });
    return view(db, caUrl(req));
  });

  app.delete('/v1/databases/:id', {
    schema: {
      summary: 'Delete a database: its compute stops and its data is removed',
      tags, security, params: IdParams, response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    const db = await databases.get(partnerOf(req), req.params.id);
    await databases.delete(db.partnerId, db.id);
    await record(db, 'database.deleted');
    return reply.code(204).send(null);
  });

  app.post('/v1/databases/:id/suspend', {
    schema: {
      summary: 'Stop the compute now (open sessions end); the next connection wakes it',
      tags, security, params: IdParams, response: { 200: Database, ...errorResponses },
    },
  }, async (req) => view(await databases.suspend(await databaseScope(req, req.params.id, catalog), req.params.id), caUrl(req)));

  app.post('/v1/databases/:id/wake', {
    schema: {
      summary: 'Start the compute now, ahead of the first connection',
      tags, security, params: IdParams, response: { 200: Database, ...errorResponses },
    },
  }, async (req) => view(await databases.wake(await databaseScope(req, req.params.id, catalog), req.params.id), caUrl(req)));

  app.post('/v1/databases/:id/roles', {
    schema: {
      summary: "Add a login role with the owner's rights; its password is in this answer only",
      tags, security, params: IdParams, body: RoleCreate, response: { 201: RoleCredentials, ...errorResponses },
    },
  }, async (req, reply) => {
    const { database, password } = await databases.addRole(partnerOf(req), req.params.id, req.body.name);
    await record(database, 'role.created', { role: req.body.name });
    return reply.code(201).send(credentials(database, req.body.name, password, caUrl(req)));
  });

  app.post('/v1/databases/:id/roles/:role/reset_password', {
    schema: {
      summary: 'Give a role a new password; the old one stops working for new connections at once',
      tags, security, params: RoleParams, response: { 200: RoleCredentials, ...errorResponses },
    },
  }, async (req) => {
    const { database, password } = await databases.resetPassword(partnerOf(req), req.params.id, req.params.role);
    await record(database, 'role.password_reset', { role: req.params.role });
    return credentials(database, req.params.role, password, caUrl(req));
  });
};
