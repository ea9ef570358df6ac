import etag from '@fastify/etag';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ConsolePart, consoleBundle } from './bundle.ts';

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
  const send = async (req: FastifyRequest, reply: FastifyReply, part: ConsolePart) => {
    const file = (await consoleBundle())[part];
    const type = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', icon: 'image/svg+xml' }[part];
    reply.headers(SECURITY_HEADERS).header('vary', 'accept-encoding').type(type);
    // Gzipped once at build time (the script is 97 kB, 39 kB gzipped).
    if (/\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) return reply.header('content-encoding', 'gzip').send(file.gzip);
    return reply.send(file.text);
  };
  const schema = { hide: true };
  app.get('/console', { schema }, (req, reply) => send(req, reply, 'html'));
  app.get('/console/', { schema }, (req, reply) => send(req, reply, 'html'));
  app.get('/console/app.js', { schema }, (req, reply) => send(req, reply, 'js'));
  app.get('/console/app.css', { schema }, (req, reply) => send(req, reply, 'css'));
  app.get('/console/favicon.svg', { schema }, (req, reply) => send(req, reply, 'icon'));
  // Browsers ask for /favicon.ico on their own (an API client may too): the console's icon, not a 404.
  app.get('/favicon.ico', { schema }, (_req, reply) => reply.redirect('/console/favicon.svg', 301));
}
