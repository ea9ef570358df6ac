import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Catalog } from '../src/catalog/catalog.ts';
import { ForbiddenError, UnauthorizedError } from '../src/errors.ts';
import { partnerOfDatabase } from '../src/operator-view.ts';
import type { Partners, Principal } from '../src/partners.ts';
import { ExpiringMap } from '../src/limits/expiring-map.ts';
import { hashApiKey } from '../src/secrets.ts';
import type { UnauthenticatedLimit } from './unauthenticated-limit.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
    /** The partner an operator's request acted for (the audit log files it there). */
    actedFor: string | undefined;
  }
}

const BEARER = /^Bearer +(\S+) *$/i;

/** The key of `Authorization: Bearer <key>`, if the header is there and well formed. */
export function bearerKey(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  return header ? BEARER.exec(header)?.[1] : undefined;
}

/**
 * Every route of this scope needs a key; 401 for a missing, unknown or revoked one, and each such
 * request counts against its client address (429 past the limit, before any lookup).
 */
export function requireApiKey(app: FastifyInstance, partners: Partners, unauthenticated: UnauthenticatedLimit): void {
  // Keys that authenticated lately still get checked (revocation is immediate), but are never held up
  // by the limit of an address that someone else floods from.
  const recent = new ExpiringMap<string, true>(RECENT_MAX);
  app.decorateRequest('principal', undefined);
  app.decorateRequest('actedFor', undefined);
  app.addHook('onRequest', async (req) => {
    const key = bearerKey(req);
    const hash = key === undefined ? undefined : hashApiKey(key);
    if (!hash || !recent.get(hash)) await unauthenticated.check(req.ip);
    const principal = key ? await partners.authenticate(key) : undefined;
    if (!principal) {
      await unauthenticated.count(req.ip);
      throw new UnauthorizedError(key ? 'unknown or revoked API key' : 'missing API key: send Authorization: Bearer <key>');
    }
    recent.set(hash!, true, RECENT_MS);
    req.principal = principal;
  });
}

/** Hashes of keys that authenticated in the last RECENT_MS, at most RECENT_MAX. */
const RECENT_MS = 10 * 60_000;
const RECENT_MAX = 10_000;

export function requireOperator(req: FastifyRequest): void {
  if (req.principal?.kind !== 'operator') throw new ForbiddenError('this route needs the operator key');
}

/** The partner whose databases this request manages. */
export function partnerOf(req: FastifyRequest): string {
  if (req.principal?.kind !== 'partner') throw new ForbiddenError('this route needs a partner key; the operator key manages partners only');
  return req.principal.partnerId;
}

/**
 * The partner whose database this request acts on: a partner key's own (another partner's
 * database is then "not found"); the operator key acts on any database as its partner.
 */
export async function databaseScope(req: FastifyRequest, databaseId: string, catalog: Catalog): Promise<string> {
  if (req.principal?.kind !== 'operator') return partnerOf(req);
  req.actedFor = await partnerOfDatabase(catalog, databaseId);
  return req.actedFor;
}

/** Whose webhooks and events a request sees: a partner's own; the operator's (null: it hears every partner's). */
export function ownerOf(req: FastifyRequest): string | null {
  if (req.principal?.kind === 'partner') return req.principal.partnerId;
  if (req.principal?.kind === 'operator') return null;
  throw new UnauthorizedError('missing API key: send Authorization: Bearer <key>');
}
