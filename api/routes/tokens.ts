import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Databases } from '../../src/databases.ts';
import type { JwtAuth } from '../../src/jwt/jwt-auth.ts';
import type { PartnerIssuer } from '../../src/jwt/partner-issuers.ts';
import { partnerOf, requireOperator } from '../auth.ts';
import { IdParams, errorResponses } from '../schemas.ts';

export interface TokenRoutesOptions {
  databases: Databases;
  jwt: JwtAuth;
}

const security = [{ apiKey: [] }];
const tags = ['tokens'];

const TokenCreate = Type.Object({
  role: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
  ttl_seconds: Type.Optional(Type.Integer({ description: 'default 3600, at most PGFLEET_TOKEN_MAX_TTL' })),
}, { additionalProperties: false });
const Token = Type.Object({ token: Type.String(), role: Type.String(), expires_at: Type.String() });
const Jwk = Type.Record(Type.String(), Type.Unknown());
const IssuerBody = Type.Object({
  issuer: Type.String({ minLength: 1, maxLength: 512 }),
  audience: Type.String({ minLength: 1, maxLength: 512 }),
  jwks_uri: Type.Optional(Type.Union([Type.String({ maxLength: 2048 }), Type.Null()])),
  jwks: Type.Optional(Type.Union([Type.Object({ keys: Type.Array(Jwk, { maxItems: 32 }) }), Type.Null()])),
  user_claim: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  database_claim: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 128 }), Type.Null()])),
  endpoint_claim: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 128 }), Type.Null()])),
  algorithms: Type.Optional(Type.Array(Type.String({ maxLength: 16 }), { maxItems: 16 })),
}, { additionalProperties: false });
const Issuer = Type.Object({
  issuer: Type.String(), audience: Type.String(), jwks_uri: Type.Union([Type.String(), Type.Null()]),
  jwks: Type.Union([Type.Object({ keys: Type.Array(Jwk) }), Type.Null()]), user_claim: Type.String(),
  database_claim: Type.Union([Type.String(), Type.Null()]), endpoint_claim: Type.Union([Type.String(), Type.Null()]),
  algorithms: Type.Array(Type.String()), updated_at: Type.String(),
});

const issuerView = (i: PartnerIssuer) => ({
  issuer: i.issuer, audience: i.audience, jwks_uri: i.jwksUri, jwks: i.jwks as { keys: Record<string, unknown>[] } | null,
  user_claim: i.userClaim, database_claim: i.databaseClaim, endpoint_claim: i.endpointClaim, algorithms: i.algorithms,
  updated_at: i.updatedAt.toISOString(),
});

/** JWT authentication: gateway-issued tokens, pgfleet's public keys, a partner's own issuer. */
export const tokenRoutes: FastifyPluginAsyncTypebox<TokenRoutesOptions> = async (app, { databases, jwt }) => {
  app.post('/v1/databases/:id/tokens', {
    schema: {
      summary: 'A short-lived JWT that connects as one role of this database (give it as the password)', tags, security,
      params: IdParams, body: TokenCreate, response: { 201: Token, ...errorResponses },
    },
  }, async (req, reply) => {
    const db = await databases.get(partnerOf(req), req.params.id);
    const issued = await jwt.tokens.issueFor(db, { role: req.body.role, ttlSeconds: req.body.ttl_seconds });
    return reply.code(201).send({ token: issued.token, role: issued.role, expires_at: issued.expiresAt.toISOString() });
  });

  app.post('/v1/keys/rotate', {
    schema: { summary: "Rotate pgfleet's token signing key (operator); tokens of the old key stay valid until they expire", tags, security, response: { 200: Type.Object({ kid: Type.String() }), ...errorResponses } },
  }, async (req) => {
    requireOperator(req);
    return { kid: await jwt.rotate() };
  });

  app.put('/v1/jwt-issuer', {
    schema: { summary: "Register the partner's own JWT issuer (JWKS URI or inline JWKS)", tags, security, body: IssuerBody, response: { 200: Issuer, ...errorResponses } },
  }, async (req) => {
    const b = req.body;
    return issuerView(await jwt.issuers.set(partnerOf(req), {
      issuer: b.issuer, audience: b.audience, jwksUri: b.jwks_uri, jwks: b.jwks as PartnerIssuer['jwks'], userClaim: b.user_claim,
      databaseClaim: b.database_claim, endpointClaim: b.endpoint_claim, algorithms: b.algorithms,
    }));
  });

  app.get('/v1/jwt-issuer', {
    schema: { summary: "The partner's JWT issuer", tags, security, response: { 200: Issuer, ...errorResponses } },
  }, async (req) => issuerView(await jwt.issuers.get(partnerOf(req))));

  app.delete('/v1/jwt-issuer', {
    schema: { summary: "Remove the partner's JWT issuer", tags, security, response: { 204: Type.Null(), ...errorResponses } },
  }, async (req, reply) => {
    await jwt.issuers.delete(partnerOf(req));
    return reply.code(204).send(null);
  });
};
