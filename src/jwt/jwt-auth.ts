import type { Catalog } from '../catalog/catalog.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { GatewayTokens } from './gateway-tokens.ts';
import { PartnerIssuers } from './partner-issuers.ts';
import { SigningKeys } from './signing-keys.ts';
import { CLOCK_TOLERANCE_SECONDS } from './token-rules.ts';
import { type ConnectionGrant, type ConnectionTokenOptions, verifyConnectionToken } from './verify-token.ts';

/** JWT authentication as the doors use it (`core.jwt`). */
export interface JwtAuth {
  /** pgfleet's signing keys: `rotate()`, `jwks()` for /.well-known/jwks.json. */
  keys: SigningKeys;
  /** Gateway-issued tokens: `issueFor(database, { role, ttlSeconds })`. */
  tokens: GatewayTokens;
  /** Partners' JWT configs: `set/get/delete(partnerId, ...)`. */
  issuers: PartnerIssuers;
  /** The proxy's check of a JWT password; see verify-token.ts. */
  verifyConnectionToken(token: string, opts?: ConnectionTokenOptions): Promise<ConnectionGrant>;
}

export async function openJwtAuth(config: Config, catalog: Catalog, log: Logger): Promise<JwtAuth> {
  // A retired key verifies as long as the last token it signed may live.
  const keys = await SigningKeys.open(config.dataDir, { retainSeconds: config.jwt.tokenMaxTtlSeconds + CLOCK_TOLERANCE_SECONDS });
  const tokens = new GatewayTokens(keys, config.jwt.tokenMaxTtlSeconds);
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
    verifyConnectionToken: (token, opts) => verifyConnectionToken({ catalog, tokens, issuers, log: jwtLog }, token, opts),
  };
}
