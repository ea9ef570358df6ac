/**
 * Why the proxy refused a connection, in words an operator can act on, with a short code to
 * count refusals by. The client hears less (an unknown role reads as a wrong password, a token's
 * full reason stays here): this goes to the log and the operator's console only.
 */
import { CapacityError, ComputeStartError, DatabaseUnavailableError, QuotaError, TokenError } from '../src/errors.ts';
import { AuthFailed, BackendError, ConnectionRefused } from './errors.ts';

export interface Refusal {
  code: string;
  why: string;
}

const TOKEN_FOREIGN = /not for this database|database not found|unknown issuer|wrong audience|unknown signing key|bad token signature|no database for this user/;

/** The refusal an error stands for; undefined for what is no refusal (a client that left, a protocol error). */
export function refusalOf(err: unknown, endpoint: unknown): Refusal | undefined {
  const at = typeof endpoint === 'string' ? ` on endpoint ${endpoint}` : '';
  if (err instanceof AuthFailed) {
    return err.reason === 'unknown_role'
      ? { code: 'unknown_role', why: `role "${err.role}" does not exist${at} (the client was told "password authentication failed"); its database's roles are in GET /v1/databases/<id>` }
      : { code: 'wrong_password', why: `wrong password for role "${err.role}"${at}; a lost password is replaced by POST /v1/databases/<id>/roles/${err.role}/reset_password` };
  }
  if (err instanceof TokenError) {
    const code = err.userReason === 'token expired' ? 'token_expired' : TOKEN_FOREIGN.test(err.userReason) ? 'token_foreign' : 'token_invalid';
    return { code, why: `JWT refused (${err.userReason})${at}: ${err.logDetail}` };
  }
  if (err instanceof ConnectionRefused) {
    if (err.sqlstate === '3D000') return { code: 'unknown_endpoint', why: `${err.message}: deleted, or a typo in the host name or in options=endpoint=` };
    if (err.sqlstate === '08004') return { code: 'no_endpoint', why: `${err.message}: the client named no endpoint pgfleet knows how to read (SNI, options or password prefix)` };
    if (/failed authentication attempts/.test(err.message)) return { code: 'too_many_failures', why: `${err.message}: the address is blocked for the rest of the minute` };
    if (err.sqlstate === '53300') return { code: 'limits', why: `${err.message}: PGFLEET_MAX_HANDSHAKES_PER_ADDRESS / PGFLEET_MAX_HANDSHAKES` };
    return { code: 'refused', why: err.message };
  }
  if (err instanceof QuotaError) {
    return err.sqlstate === '53300'
      ? { code: 'max_connections', why: `${err.message}${at}` }
      : { code: 'quota', why: `${err.message}${at}` };
  }
  if (err instanceof CapacityError) return { code: 'capacity', why: `${err.message}: raise PGFLEET_MAX_COMPUTES or add a gateway` };
  if (err instanceof ComputeStartError) return { code: 'wake_failed', why: `${err.message}${at}` };
  if (err instanceof DatabaseUnavailableError) return { code: 'database_unavailable', why: `${err.message}${at}` };
  if (err instanceof BackendError) return { code: 'backend_error', why: `the compute refused the session${at}: ${err.sqlstate} ${err.message}${err.detail ? ` (${err.detail})` : ''}` };
  return undefined;
}
