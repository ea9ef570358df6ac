import { errors } from 'jose';
import { TokenError } from '../errors.ts';

/** How far clocks may disagree on `exp`, `nbf` and `iat`. */
export const CLOCK_TOLERANCE_SECONDS = 30;

/** Asymmetric algorithms a partner may allow; HS* (a shared secret) and `none` never verify. */
export const PARTNER_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export const DEFAULT_PARTNER_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'];

const CLAIM_REASONS: Record<string, string> = {
  nbf: 'token not yet valid',
  iat: 'token issued in the future',
  iss: 'wrong issuer',
  aud: 'wrong audience',
  exp: 'token has no expiry',
};

/** A jose failure (or anything else thrown while verifying) as the refusal the client sees. */
export function refusal(err: unknown): TokenError {
  if (err instanceof TokenError) return err;
  const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  if (err instanceof errors.JWTExpired) return new TokenError('token expired', detail);
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new TokenError(CLAIM_REASONS[err.claim] ?? `token claim "${err.claim}" is not valid`, detail);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return new TokenError('signing algorithm not allowed', detail);
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return new TokenError('unknown signing key', detail);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new TokenError('bad token signature', detail);
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return new TokenError('malformed token', detail);
  return new TokenError("the token issuer's keys are unavailable", detail);
}
