/**
 * `POST /sql`: one query or a batch in one transaction, for Neon's serverless driver. The same
 * steps as a wire connection (connection.ts): the endpoint from the connection string's host (or
 * its options, the password prefix, a JWT), the password or JWT checked under the same failure
 * limits, quotas, wake, a compute session (pooled), metering and one log line per request.
 */
import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SqlSettings } from '../../src/config.ts';
import { PgfleetError } from '../../src/errors.ts';
import { admit, closeSession, logConnection, newSession, noteFailure, openSession } from '../connection.ts';
import type { ConnectionContext } from '../context.ts';
import { authenticateWithPassword } from '../login.ts';
import { endpointFromSni, endpointFromStartup, poolerEndpoint } from '../endpoint.ts';
import type { Session } from '../session.ts';
import { HttpError } from './http-error.ts';
import type { SqlCodecPool } from './sql-codec-pool.ts';
import { ConnectionLost, ResultTooLarge, StatementError } from './sql-connection.ts';
import type { SqlSessionPool } from './sql-session-pool.ts';
import { checkDeclaredLength, parseConnectionString, parseFlags, readBody } from './sql-request.ts';
import { errorAnswer } from './sql-result.ts';

/** Largest JSON answer (Neon's limit too); past it the statement is cancelled and the answer is 507. */
export const MAX_RESPONSE_BYTES = 10 * 1024 * 1024;

export const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'POST, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, Neon-Connection-String, Neon-Raw-Text-Output, Neon-Array-Mode, '
    + 'Neon-Pool-Opt-In, Neon-Batch-Read-Only, Neon-Batch-Isolation-Level, Neon-Batch-Deferrable',
  'Access-Control-Max-Age': '86400',
};

/** What a request is served with, beside the proxy's context. */
export interface SqlDoor {
  pool: SqlSessionPool;
  codec: SqlCodecPool;
  settings: SqlSettings;
}

export async function handleSql(req: IncomingMessage, res: ServerResponse, ctx: ConnectionContext, door: SqlDoor): Promise<void> {
  const started = Date.now();
  const client = req.socket.remoteAddress ?? '';
  const line: Record<string, unknown> = { client, door: 'http' };
  let session: Session | undefined;
  let terminatedBy: PgfleetError | undefined;
  let timedOut = false;
  let authenticated = false;
  const releases: (() => void)[] = [];
  try {
    // The body is read only once its sender has authenticated: nobody unknown makes the gateway hold megabytes.
    checkDeclaredLength(req);
    const target = parseConnectionString(req.headers['neon-connection-string']);
    const flags = parseFlags(req.headers);
    line.role = target.role;
    // SQL over HTTP is pooled anyway: a `-pooler` host names the same endpoint.
    const endpoint = poolerEndpoint(endpointFromStartup(endpointFromSni(target.host, ctx.core.config.domain), target.optionsEndpoint)).endpoint;
    line.endpoint = endpoint;
    const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const route = await authenticateWithPassword(bearer ?? target.password, { endpoint, role: target.role, client }, line, ctx);
    authenticated = true;
    if (await admit(route, ctx)) releases.push(() => ctx.core.usage.leave(route.databaseId));
    const raw = await readBody(req);
    const request = await door.codec.encode(raw, { begin: flags.begin, maxStatements: door.settings.maxStatements });
    const lease = await ctx.core.acquire(route);
    releases.push(() => lease.release());
    const pooled = await door.pool.take(lease, route, target.role, target.database);
    session = newSession(route, target.role, (reason) => {
      terminatedBy = reason;
      pooled.connection.destroy();
    });
    session.bytesFromClient = raw.length;
    openSession(session, ctx);
    // A client that leaves mid-query does not keep the compute busy.
    const abandoned = () => {
      if (!res.writableFinished) pooled.connection.cancel();
    };
    res.once('close', abandoned);
    const timer = setTimeout(() => {
      timedOut = true;
      pooled.connection.cancel();
    }, door.settings.timeoutMs);
    let answer: Buffer;
    try {
      answer = await pooled.connection.run(request.wire, MAX_RESPONSE_BYTES);
    } finally {
      clearTimeout(timer);
      res.off('close', abandoned);
      door.pool.give(pooled);
    }
    const text = await door.codec.decode(answer, request, flags);
    if (text.length > MAX_RESPONSE_BYTES) throw new ResultTooLarge(`response is too large (max is ${MAX_RESPONSE_BYTES} bytes)`);
    session.bytesToClient = send(res, 200, text, request.kind === 'batch' ? flags.batchHeaders : {});
    line.outcome = 'answered';
    line.statements = request.arrayModes.length;
  } catch (err) {
    const failure = terminatedBy ?? (timedOut && err instanceof StatementError
      ? new HttpError(400, `canceling statement: the request ran longer than PGFLEET_SQL_TIMEOUT (${door.settings.timeoutMs / 1000} s)`, '57014')
      : err);
    const [status, answer] = errorFor(failure);
    if (failure instanceof StatementError) line.outcome = `sql error ${failure.fields.code}`;
    else noteFailure(failure, line, ctx);
    line.status = status;
    const sent = send(res, status, JSON.stringify(answer), {});
    if (session) session.bytesToClient = sent;
    // A body over the limit is not read to its end: close rather than drain it.
    if (status === 413) res.once('finish', () => req.destroy());
  } finally {
    for (const release of releases) release();
    if (session) closeSession(session, line, ctx);
    logConnection(line, session ? 'relayed' : String(line.outcome), started, authenticated, ctx);
  }
}

/** The status and JSON body of a failure: Postgres errors are 400 with their fields (the driver raises them as NeonDbError). */
function errorFor(err: unknown): [number, Record<string, unknown>] {
  if (err instanceof StatementError) return [400, errorAnswer(err.fields)];
  if (err instanceof ResultTooLarge) return [507, { message: err.message, code: '54000' }];
  if (err instanceof ConnectionLost) return [400, { message: err.message, code: '08006' }];
  if (err instanceof HttpError) return [err.httpStatus, { message: err.message, code: err.sqlstate }];
  if (err instanceof PgfleetError) {
    const hint = (err as PgfleetError & { hint?: string }).hint;
    return [400, { message: err.message, code: err.sqlstate, severity: 'FATAL', ...(hint ? { hint } : {}) }];
  }
  return [500, { message: 'internal error in the pgfleet proxy', code: 'XX000' }];
}

/** Writes a JSON answer with the CORS headers; returns the body's size. */
export function send(res: ServerResponse, status: number, text: string | Buffer, extra: Record<string, string>): number {
  const bytes = Buffer.byteLength(text);
  if (res.headersSent || res.destroyed) return 0;
  res.writeHead(status, {
    ...CORS_HEADERS,
    ...extra,
    'Content-Type': 'application/json',
    'Content-Length': bytes,
    'Neon-Request-Id': crypto.randomUUID(),
  });
  res.end(text);
  return bytes;
}
