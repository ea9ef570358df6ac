import etag from '@fastify/etag';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { consoleBundle } from './bundle.ts';

// The page only ever talks to this origin's API; nothing inline, nothing from elsewhere.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Revalidated each load (ETag), so a restarted gateway never serves an old bundle.
  'cache-control': 'no-cache',
};

/** The web console at /console: static files built from api/console/app; every call it makes goes through the public API. */
export async function consoleRoutes(app: FastifyInstance): Promise<void> {
  await app.register(etag);
  const send = async (reply: FastifyReply, part: 'html' | 'js' | 'css') => {
    const bundle = await consoleBundle();
    const type = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' }[part];
    return reply.headers(SECURITY_HEADERS).type(type).send(bundle[part]);
  };
  const schema = { hide: true };
  app.get('/console', { schema }, (_req, reply) => send(reply, 'html'));
  app.get('/console/', { schema }, (_req, reply) => send(reply, 'html'));
  app.get('/console/app.js', { schema }, (_req, reply) => send(reply, 'js'));
  app.get('/console/app.css', { schema }, (_req, reply) => send(reply, 'css'));
}
