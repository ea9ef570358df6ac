import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Core } from '../src/gateway.ts';

/** The partner-facing HTTP API. */
export async function buildApi(core: Core): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: core.log.child({ door: 'api' }) as FastifyBaseLogger });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const ok = await core.catalog.ping();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'catalog unreachable' });
  });
  return app;
}
