import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ForbiddenError, UnauthorizedError } from '../src/errors.ts';
import type { Partners, Principal } from '../src/partners.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

const BEARER = /^Bearer +(\S+) *$/i;

/** The key of `Authorization: Bearer <key>`, if the header is there and well formed. */
export function bearerKey(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  return header ? BEARER.exec(header)?.[1] : undefined;
}

/** Every route of this scope needs a key; 401 for a missing, unknown or revoked one. */
export function requireApiKey(app: FastifyInstance, partners: Partners): void {
  app.decorateRequest('principal', undefined);
  app.addHook('onRequest', async (req) => {
    const key = bearerKey(req);
    if (!key) throw new UnauthorizedError('missing API key: send Authorization: Bearer <key>');
    const principal = await partners.authenticate(key);
    if (!principal) throw new UnauthorizedError('unknown or revoked API key');
    req.principal = principal;
  });
}

export function requireOperator(req: FastifyRequest): void {
  if (req.principal?.kind !== 'operator') throw new ForbiddenError('this route needs the operator key');
}

/** The partner whose databases this request manages. */
export function partnerOf(req: FastifyRequest): string {
  if (req.principal?.kind !== 'partner') throw new ForbiddenError('this route needs a partner key; the operator key manages partners only');
  return req.principal.partnerId;
}
