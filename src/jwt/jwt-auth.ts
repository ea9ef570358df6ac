import type { Catalog } from '../catalog/catalog.ts';
import type { RouteCache } from '../catalog/route-cache.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { JSONWebKeySet } from 'jose';
import type { FleetKeys } from './fleet-keys.ts';
import { GatewayTokens } from './gateway-tokens.ts';
import { PartnerIssuers } from './partner-issuers.ts';
import { SigningKeys } from './signing-keys.ts';
import { CLOCK_TOLERANCE_SECONDS } from './token-rules.ts';
import { type ConnectionGrant, type ConnectionTokenOptions, verifyConnectionToken } from './verify-token.ts';

/** JWT authentication as the doors use it (`core.jwt`). */
export interface JwtAuth {
  /** This gateway's signing keys. */
  keys: SigningKeys;
  /** A new signing key for this gateway (recorded for the fleet at once); returns its kid. */
  rotate(): Promise<string>;
  /** The JWK Set of /.well-known/jwks.json: this gateway's keys, and in a fleet every node's. */
  jwks(): Promise<JSONWebKeySet>;
  /** Gateway-issued tokens: `issueFor(database, { role, ttlSeconds })`. */
  tokens: GatewayTokens;
  /** Partners' JWT configs: `set/get/delete(partnerId, ...)`. */
  issuers: PartnerIssuers;
  /** The proxy's check of a JWT password; see verify-token.ts. */
  verifyConnectionToken(token: string, opts?: ConnectionTokenOptions): Promise<ConnectionGrant>;
}

/** In a fleet: the other nodes' keys, and how this node records its own after a rotation. */
export interface JwtFleet {
  keys: FleetKeys;
  publish(): Promise<void>;
}

export async function openJwtAuth(config: Config, catalog: Catalog, routes: RouteCache, log: Logger, fleet?: JwtFleet): Promise<JwtAuth> {
  // A retired key verifies as long as the last token it signed may live.
  const keys = await SigningKeys.open(config.dataDir, { retainSeconds: config.jwt.tokenMaxTtlSeconds + CLOCK_TOLERANCE_SECONDS });
  const tokens = new GatewayTokens(keys, config.jwt.tokenMaxTtlSeconds, fleet?.keys);
  const issuers = new PartnerIssuers(catalog, {
    jwksCacheMaxAgeMs: config.jwt.jwksCacheMaxAgeMs,
    jwksCooldownMs: config.jwt.jwksCooldownMs,
    jwksAllowHttp: config.jwt.jwksAllowHttp,
    jwksAllowInternal: config.jwt.jwksAllowInternal,
    log,
  });
  const jwtLog = log.child({ component: 'jwt' });
  return {
    keys,
    tokens,
    issuers,
    async rotate() {
      const kid = await keys.rotate();
      await fleet?.publish();
      return kid;
    },
    async jwks() {
      const own = keys.jwks();
      return fleet ? { keys: [...own.keys, ...(await fleet.keys.others())] } : own;
    },
    verifyConnectionToken: (token, opts) => verifyConnectionToken({ catalog, routes, tokens, issuers, log: jwtLog }, token, opts),
  };
}
