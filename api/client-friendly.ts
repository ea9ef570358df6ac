/**
 * What generic HTTP clients and generated clients need from the API: a JSON content type with
 * an empty body reads as no body (many clients send the header on every DELETE and POST), and
 * every operation has an operationId.
 */
import type { FastifyInstance } from 'fastify';

/** `Content-Type: application/json` with an empty body is no body; anything else parses as before. */
export function acceptEmptyJsonBodies(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = String(body);
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    parseJson(req, text, done);
  });
}

const pascal = (word: string) => word.split(/[_-]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
const isPlural = (word: string) => /[^s]s$/.test(word);
const singular = (word: string) => word.replace(/ies$/, 'y').replace(/(ch|sh|x|ss)es$/, '$1').replace(/([^s])s$/, '$1');

/**
 * A readable operationId from the method and path, where the route names none:
 * `GET /v1/databases` → listDatabases, `POST /v1/databases` → createDatabase,
 * `GET /v1/databases/:id` → getDatabase, `POST /v1/databases/:id/suspend` → suspendDatabase,
 * `POST /v1/keys/rotate` → rotateKeys, `PUT /v1/jwt-issuer` → putJwtIssuer.
 */
export function operationIdFor(method: string, url: string): string {
  const parts = url.split('/').filter((p) => p && p !== 'v1' && !p.startsWith('.'));
  const words: string[] = [];
  let endsWithParam = false;
  let action: string | undefined;
  parts.forEach((p, i) => {
    if (p.startsWith(':')) {
      endsWithParam = true;
      if (words.length > 0) words[words.length - 1] = singular(words.at(-1)!);
      return;
    }
    endsWithParam = false;
    // A last segment that is no collection, posted to, is the action itself (…/:id/suspend, /keys/rotate).
    if (method === 'POST' && i === parts.length - 1 && i > 0 && !isPlural(p)) action = p;
    else words.push(p);
  });
  let verb: string;
  if (action) verb = action;
  else if (method === 'GET') verb = !endsWithParam && isPlural(words.at(-1) ?? '') ? 'list' : 'get';
  else if (method === 'POST') {
    verb = 'create';
    if (words.length > 0) words[words.length - 1] = singular(words.at(-1)!);
  } else verb = { PUT: 'put', PATCH: 'update', DELETE: 'delete' }[method] ?? method.toLowerCase();
  const name = pascal(verb);
  return name.charAt(0).toLowerCase() + name.slice(1) + words.map(pascal).join('');
}

/** Gives every documented route an operationId (unless it has one). Register before the routes. */
export function nameOperations(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    if (!route.schema || (route.schema as { hide?: boolean }).hide) return;
    const schema = route.schema as { operationId?: string };
    if (schema.operationId) return;
    const method = Array.isArray(route.method) ? route.method[0]! : route.method;
    if (method === 'HEAD') return;
    schema.operationId = operationIdFor(method, route.url);
  });
}
