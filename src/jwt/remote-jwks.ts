import { type JSONWebKeySet, type JWTVerifyGetKey, createLocalJWKSet, createRemoteJWKSet, customFetch, errors } from 'jose';
import { TokenError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { outboundFetch } from '../outbound-address.ts';

export interface RemoteJwksOptions {
  /** How long fetched keys are used before the JWKS is fetched again. */
  cacheMaxAgeMs: number;
  /** The least time between two fetches: after an unknown kid, or after a failed fetch. */
  cooldownMs: number;
  /** Let the JWKS live on a loopback, link-local or private address. */
  allowInternalAddresses: boolean;
  log: Logger;
}

const FETCH_TIMEOUT_MS = 5000;
const MAX_JWKS_BYTES = 256 * 1024;

/**
 * A partner's remote JWKS (jose createRemoteJWKSet: cached, refetched on an unknown kid at most
 * once per cooldown) that keeps serving the keys it last fetched while the JWKS server is down:
 * a known kid still verifies, an unknown kid is refused. Until the first fetch succeeds, nothing verifies.
 */
export function cachedRemoteJwks(url: URL, opts: RemoteJwksOptions): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(url, {
    cacheMaxAge: opts.cacheMaxAgeMs,
    cooldownDuration: opts.cooldownMs,
    timeoutDuration: FETCH_TIMEOUT_MS,
    // jose follows no redirect (a 3xx fails the fetch); this fetch connects to public addresses only.
    [customFetch]: outboundFetch({ allowInternal: opts.allowInternalAddresses, maxBytes: MAX_JWKS_BYTES }),
  });
  let failedAt = Number.NEGATIVE_INFINITY;
  let stale: { json: string; getKey: JWTVerifyGetKey } | undefined;
  const lastKnown = (): JWTVerifyGetKey | undefined => {
    const jwks: JSONWebKeySet | undefined = remote.jwks();
    if (!jwks) return undefined;
    const json = JSON.stringify(jwks);
    if (stale?.json !== json) stale = { json, getKey: createLocalJWKSet(jwks) };
    return stale.getKey;
  };
  return async (header, token) => {
    const known = lastKnown();
    // Right after a failed fetch, do not make every connection wait on the server again.
    if (known && Date.now() - failedAt < opts.cooldownMs) return known(header, token);
    try {
      return await remote(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      failedAt = Date.now();
      const reason = err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}` : String(err);
      opts.log.warn({ jwks_uri: url.href, err: reason, cached: !!known }, 'partner JWKS fetch failed');
      if (!known) throw new TokenError("the token issuer's keys are unavailable", `JWKS ${url.href} could not be fetched: ${reason}`);
      return known(header, token);
    }
  };
}
