import { PgfleetError } from '../src/errors.ts';

/** Malformed, truncated or oversized input from a client: the connection ends, never the process. */
export class ProtocolViolation extends PgfleetError {
  constructor(message: string) {
    super(message, '08P01', 400, 'protocol_violation');
  }
}

/**
 * Wrong password and unknown role read the same to the client, so that roles cannot be probed;
 * `reason` tells them apart for the operator's log only.
 */
export class AuthFailed extends PgfleetError {
  constructor(readonly role: string, readonly reason: 'unknown_role' | 'wrong_password') {
    super(`password authentication failed for user "${role}"`, '28P01', 401, 'auth_failed');
  }
}

/**
 * The proxy will not serve this connection: no TLS, no endpoint, an unknown endpoint, too
 * many failed attempts. The SQLSTATE says which class of problem it is.
 */
export class ConnectionRefused extends PgfleetError {
  constructor(message: string, sqlstate: string, readonly hint?: string) {
    super(message, sqlstate, 403, 'connection_refused');
  }
}

/** The compute answered its startup with an error; passed on to the client as it was. */
export class BackendError extends PgfleetError {
  constructor(message: string, sqlstate: string, readonly severity: string, readonly detail?: string, readonly hint?: string) {
    super(message, sqlstate, 502, 'backend_error');
  }
}

/**
 * An end the client hears nothing of, as with Postgres, which only logs these (COMMERROR):
 * not a Postgres client (a bad startup length), a client that left, a failed TLS handshake.
 */
export class Unanswered extends PgfleetError {
  constructor(message: string, sqlstate = '08P01', code = 'protocol_violation') {
    super(message, sqlstate, 400, code);
  }
}

/** The client closed the connection before or in the middle of a handshake message. */
export class ClientLeft extends Unanswered {
  constructor(message = 'the client closed the connection') {
    super(message, '08006', 'client_left');
  }
}

/** The TLS handshake failed (no common protocol or cipher, no ALPN match, a client that gave up). */
export class TlsHandshakeFailed extends Unanswered {
  constructor(reason: string) {
    super(`the TLS handshake failed: ${reason}`, '08P01', 'tls_handshake_failed');
  }
}
