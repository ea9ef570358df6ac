import etag from '@fastify/etag';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { type TypeBoxTypeProvider, TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import crypto from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { PublicAddress } from '../src/connection-uri.ts';
import type { Core } from '../src/gateway.ts';
import { addressKey } from '../src/limits/address-key.ts';
import { FairCaps } from '../src/limits/fair-caps.ts';
import { answerInHttp, guardListener } from '../src/limits/listener-guard.ts';
import { hashApiKey } from '../src/secrets.ts';
import { auditMutations } from './audit-hook.ts';
import { bearerKey, requireApiKey } from './auth.ts';
import { caCertificateRoute } from './ca-certificate.ts';
import { acceptEmptyJsonBodies, nameOperations } from './client-friendly.ts';
import { consoleRoutes } from './console/routes.ts';
import { refuseControlCharacters } from './control-characters.ts';
import { installErrorHandlers } from './errors.ts';
import { IdempotencyStore } from './idempotency.ts';
import { UnauthenticatedLimit } from './unauthenticated-limit.ts';
import { branchRoutes } from './routes/branches.ts';
import { auditRoutes } from './routes/audit.ts';
import { databaseRoutes } from './routes/databases.ts';
import { eventRoutes } from './routes/events.ts';
import { operatorRoutes } from './routes/operator.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import { whoamiRoutes } from './routes/whoami.ts';
import { migrationRoutes } from './routes/migrations.ts';
import { templateRoutes } from './routes/templates.ts';
import { fleetRoutes } from './routes/fleet.ts';
import { nodeRoutes } from './routes/nodes.ts';
import { partnerRoutes } from './routes/partners.ts';
import { reconcileRoutes } from './routes/reconcile.ts';
import { tokenRoutes } from './routes/tokens.ts';
import { usageRoutes } from './routes/usage.ts';
import { computeSizeRoutes } from './routes/compute-sizes.ts';
import { ErrorBody } from './schemas.ts';

export interface ApiOptions {
  /** Where end developers reach the proxy: connection URIs name it. */
  publicAddress: PublicAddress;
}

const BODY_LIMIT = 64 * 1024;
/** A whole request (64 kB of body at most) from its first byte. */
const REQUEST_TIMEOUT_MS = 30_000;
/** A request id a client sends (x-request-id) is kept when it looks like one; else one is made. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const PURGE_EVERY_MS = 10 * 60_000;

/** The partner-facing HTTP API. */
export async function buildApi(core: Core, opts: ApiOptions): Promise<FastifyInstance> {
  const { config } = core;
  const openingMs = config.proxyLimits.startupTimeoutMs;
  const app = Fastify({
    loggerInstance: core.log.child({ door: 'api' }) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    // A request's headers within the startup timeout (checked every second), all of it within REQUEST_TIMEOUT_MS.
    http: { headersTimeout: openingMs, connectionsCheckingInterval: 1000 },
    requestTimeout: REQUEST_TIMEOUT_MS,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  // Idle or trickling sockets can take neither the descriptors the proxy and computes need nor other partners' room.
  guardListener(app.server, {
    caps: new FairCaps({ total: config.apiMaxConnections, perAddress: config.apiMaxConnectionsPerAddress }, 'connections'),
    openingTimeoutMs: openingMs,
    trusted: config.trustedProxies,
    answer: (socket, refusal) => answerInHttp(socket, refusal, JSON.stringify({ error: { code: refusal.code, message: refusal.message } }), 'application/json'),
  });
  // TypeBox checks bodies as they are (no type coercion) and converts query, params and headers.
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  installErrorHandlers(app);
  refuseControlCharacters(app);
  acceptEmptyJsonBodies(app);
  nameOperations(app);
  app.addSchema(ErrorBody);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'pgfleet provisioning API', version: '1', description: 'One Postgres database per user of a partner platform. Every authenticated answer carries an ETag: send it back in If-None-Match to get 304 Not Modified (no body) while the answer is unchanged.' },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'a partner key, or the operator key for /v1/partners' } } },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });

  // Per key (the hash of a presented key that could be valid), else per client address. Requests
  // without a valid key are limited further, per address, by UnauthenticatedLimit.
  await app.register(rateLimit, {
    max: core.config.apiRateLimit,
    timeWindow: 60_000,
    keyGenerator: (req) => {
      const key = bearerKey(req);
      return key && (core.partners.couldBePartnerKey(key) || hashApiKey(key) === core.adminKeyHash) ? `key:${hashApiKey(key)}` : `ip:${addressKey(req.ip)}`;
    },
  });

  app.get('/healthz', { config: { rateLimit: false }, schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { rateLimit: false }, schema: { hide: true } }, async (_req, reply) => {
    const ok = await core.catalog.ping();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'catalog unreachable' });
  });
  // Operator metrics for Prometheus scrapers: low cardinality, nothing per database (that is /metrics/usage).
  app.get('/metrics', { config: { rateLimit: false }, schema: { hide: true } }, async (_req, reply) =>
    reply.type(core.metrics.registry.contentType).send(await core.metrics.text()));
  app.addHook('onResponse', async (req, reply) => {
    core.metrics.apiSeconds.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  // pgfleet's public token keys: anyone may verify a pgfleet token.
  app.get('/.well-known/jwks.json', { config: { rateLimit: false }, schema: { hide: true } }, async () => core.jwt.jwks());
  app.get('/v1/openapi.json', { config: { rateLimit: false }, schema: { hide: true } }, async () => app.swagger());
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { url: '/v1/openapi.json' } });
  await caCertificateRoute(app, opts.publicAddress);
  await app.register(consoleRoutes);

  const idempotency = new IdempotencyStore(core.catalog);
  await app.register(async (scope) => {
    requireApiKey(scope, core.partners, new UnauthenticatedLimit(core.config.apiUnauthenticatedRateLimit, core.coord));
    auditMutations(scope, core.audit);
    // Every answer carries an ETag; a poller that sends it back as If-None-Match gets 304 while nothing changed.
    await scope.register(etag);
    await scope.register(partnerRoutes, { partners: core.partners });
    await scope.register(whoamiRoutes, { partners: core.partners });
    await scope.register(databaseRoutes, { databases: core.databases, templates: core.templates, events: core.events, catalog: core.catalog, idempotency, publicAddress: opts.publicAddress,
      defaultHistoryRetentionSeconds: core.config.history.retentionSeconds,
      defaultAutoscaling: core.config.compute.autoscaling,
      postgresVersionOf: (region, major) => core.regions.find(region)?.provider.postgresVersion(major) ?? String(major),
    });
    await scope.register(branchRoutes, {
      branches: core.branches, databases: core.databases, computes: core.computes, publicAddress: opts.publicAddress,
      expiry: core.branchExpiry, events: core.events, catalog: core.catalog,
    });
    await scope.register(tokenRoutes, { databases: core.databases, jwt: core.jwt });
    await scope.register(usageRoutes, { databases: core.databases, usage: core.usage, catalog: core.catalog });
    await scope.register(computeSizeRoutes, { databases: core.databases, sizes: core.sizes, catalog: core.catalog, defaultAutoscaling: core.config.compute.autoscaling });
    await scope.register(fleetRoutes, { catalog: core.catalog, computes: core.computes, metrics: core.metrics });
    await scope.register(nodeRoutes, { nodes: core.nodes, drainer: core.drainer, computes: core.computes, maxComputes: core.config.maxComputes });
    await scope.register(reconcileRoutes, { reconciler: core.reconciler });
    await scope.register(eventRoutes, { events: core.events });
    await scope.register(webhookRoutes, { webhooks: core.webhooks });
    await scope.register(auditRoutes, { audit: core.audit });
    await scope.register(migrationRoutes, { jobs: core.migrations.jobs });
    await scope.register(templateRoutes, { templates: core.templates, events: core.events });
    await scope.register(async (operator) => operatorRoutes(operator, {
      catalog: core.catalog, usage: core.usage, partners: core.partners, events: core.events, webhooks: core.webhooks, failures: core.failures,
    }));
  });

  const purge = setInterval(() => {
    idempotency.purgeExpired().catch((err) => app.log.warn({ err: err.message }, 'could not purge expired idempotency keys'));
  }, PURGE_EVERY_MS);
  purge.unref();
  app.addHook('onClose', async () => clearInterval(purge));
  return app;
}
