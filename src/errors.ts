/**
 * Typed errors. Each carries what it becomes at the edge: a SQLSTATE for the wire proxy
 * and an HTTP status (with a stable code) for the API.
 */
export class PgfleetError extends Error {
  constructor(
    message: string,
    readonly sqlstate: string,
    readonly httpStatus: number,
    readonly code: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ConfigError extends PgfleetError {
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`, 'F0000', 500, 'config_error');
  }
}

export class NotFoundError extends PgfleetError {
  constructor(message: string) {
    super(message, '3D000', 404, 'not_found');
  }
}

export class ConflictError extends PgfleetError {
  constructor(message: string) {
    super(message, '42710', 409, 'conflict');
  }
}

export class BadRequestError extends PgfleetError {
  constructor(message: string) {
    super(message, '22023', 400, 'bad_request');
  }
}

/** The compute could not be started (or did not start in time). */
export class ComputeStartError extends PgfleetError {
  constructor(message: string) {
    super(message, '57P03', 503, 'compute_unavailable');
  }
}

/** Every compute slot is busy: nothing idle can be suspended to make room. */
export class CapacityError extends PgfleetError {
  constructor(message: string) {
    super(message, '53300', 503, 'capacity_exhausted');
  }
}

/** A usage quota is exhausted. */
export class QuotaError extends PgfleetError {
  constructor(message: string, sqlstate = '53400', readonly quota?: { name: string; limit: number }) {
    super(message, sqlstate, 402, 'quota_exceeded');
  }
}

/** A provider's own service (Neon's API, say) failed or did not answer in time. */
export class ProviderError extends PgfleetError {
  constructor(message: string, httpStatus = 502, code = 'provider_error') {
    super(message, '58000', httpStatus, code);
  }
}

/**
 * The database cannot be served: it is still being created, or its provider resource (a Neon
 * project) is gone. The reason says which and what the operator does about it.
 */
export class DatabaseUnavailableError extends PgfleetError {
  constructor(message: string) {
    super(message, '58000', 409, 'database_unavailable');
  }
}

/** No API key, or one that is unknown or revoked. */
export class UnauthorizedError extends PgfleetError {
  constructor(message: string) {
    super(message, '28000', 401, 'unauthorized');
  }
}

/** Too many requests; retry after the given seconds. */
export class RateLimitedError extends PgfleetError {
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(message, '53400', 429, 'rate_limited');
  }
}

/** A valid key that may not do this (a partner key on an operator route, and the reverse). */
export class ForbiddenError extends PgfleetError {
  constructor(message: string) {
    super(message, '42501', 403, 'forbidden');
  }
}

/**
 * A connection's JWT was refused. `message` (= userReason) is short and safe to send to the
 * client ("token expired", "wrong audience"); `logDetail` is the full reason, for the log only.
 */
export class TokenError extends PgfleetError {
  constructor(
    readonly userReason: string,
    readonly logDetail: string,
  ) {
    super(userReason, '28P01', 401, 'invalid_token');
  }
}

/** The session's branch is being restored or reset: the session ends so the new data can take its place. */
export class BranchRewoundError extends PgfleetError {
  constructor(message: string) {
    super(message, '57P01', 409, 'branch_rewound');
  }
}

/**
 * A commit waited for the store longer than PGFLEET_STORAGE_SYNC_TIMEOUT (a durability "sync"
 * database, or an async one whose WAL waiting on its node passed PGFLEET_STORAGE_MAX_BACKLOG): its
 * session ends without the commit acknowledged. 58030 (io_error): the storage did not take the write.
 */
export class StorageWaitError extends PgfleetError {
  constructor(message: string) {
    super(message, '58030', 503, 'storage_wait');
  }
}

/**
 * A listener turned a connection away before its protocol began: a connection cap (53300, as
 * Postgres says for too many connections; HTTP 503), or a PROXY protocol header that is missing
 * from a trusted proxy, sent by anyone else, or malformed (08P01; HTTP 400). A peer that sent
 * nothing in time is `silent`ly closed (what would it read?).
 */
export class ListenerRefusal extends PgfleetError {
  constructor(message: string, sqlstate: '53300' | '08P01' = '53300', readonly silent = false) {
    super(message, sqlstate, sqlstate === '53300' ? 503 : 400, sqlstate === '53300' ? 'too_many_connections' : 'proxy_protocol');
  }
}

/**
 * An autoscaling range that cannot be: `invalid_autoscaling` (a bound off the 0.25 CU grid or out
 * of 0.25–16, a floor above its ceiling), or `floor_exceeds_host` (a local floor larger than the
 * whole host: floors are not reservations, but one compute cannot hold more than the host).
 */
export class AutoscalingError extends PgfleetError {
  constructor(message: string, code: 'invalid_autoscaling' | 'floor_exceeds_host' = 'invalid_autoscaling') {
    super(message, '22023', 400, code);
  }
}
