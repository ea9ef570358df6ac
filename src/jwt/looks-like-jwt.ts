/** Longest password the proxy should treat as a JWT. */
const MAX_JWT_LENGTH = 16 * 1024;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Whether a cleartext password is a compact JWT (three base64url segments whose header is a
 * JSON object with an `alg`), as opposed to a role's password. Verifies nothing.
 */
export function looksLikeJwt(password: string): boolean {
  if (password.length > MAX_JWT_LENGTH || !COMPACT_JWS.test(password)) return false;
  try {
    const header: unknown = JSON.parse(Buffer.from(password.slice(0, password.indexOf('.')), 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}
