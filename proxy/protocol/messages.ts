/**
 * Server-side protocol messages the proxy writes itself (the compute writes the rest), and
 * the few client auth messages it reads.
 */
import { PgfleetError } from '../../src/errors.ts';
import { ProtocolViolation } from '../errors.ts';
import { AUTH, ENCRYPTION, ERROR_FIELD, MSG, PROTOCOL_MAJOR } from './codes.ts';


/** A typed message: type byte, Int32 length, body. */
export function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export function int16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n);
  return b;
}

export function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export const cstring = (s: string) => Buffer.from(`${s}\0`, 'utf8');

/** The one-byte answer to SSLRequest or GSSENCRequest. */
export const encryptionResponse = (accept: boolean) => Buffer.from([accept ? ENCRYPTION.accepted : ENCRYPTION.refused]);

export const authenticationOk = () => message(MSG.authentication, int32(AUTH.ok));
export const authenticationCleartextPassword = () => message(MSG.authentication, int32(AUTH.cleartextPassword));
export const authenticationSASL = (mechanisms: string[]) =>
  message(MSG.authentication, Buffer.concat([int32(AUTH.sasl), ...mechanisms.map(cstring), Buffer.from([0])]));
export const authenticationSASLContinue = (data: string) => message(MSG.authentication, Buffer.concat([int32(AUTH.saslContinue), Buffer.from(data)]));
export const authenticationSASLFinal = (data: string) => message(MSG.authentication, Buffer.concat([int32(AUTH.saslFinal), Buffer.from(data)]));

export const backendKeyData = (pid: number, secret: number) => message(MSG.backendKeyData, Buffer.concat([int32(pid), int32(secret)]));

/** The newest minor version this server speaks, and the protocol options it did not recognize. */
export const negotiateProtocolVersion = (minor: number, unrecognized: string[]) =>
  message(MSG.negotiateProtocolVersion, Buffer.concat([int32((PROTOCOL_MAJOR << 16) | minor), int32(unrecognized.length), ...unrecognized.map(cstring)]));

export const parameterStatus = (name: string, value: string) => message(MSG.parameterStatus, Buffer.concat([cstring(name), cstring(value)]));
/** Terminate: a client's goodbye. */
export const TERMINATE = message(MSG.terminate, Buffer.alloc(0));

/** ReadyForQuery with its transaction status: I (idle), T (in a transaction), E (in a failed one). */
export const readyForQuery = (status: number) => message(MSG.readyForQuery, Buffer.from([status]));

export interface ErrorFields {
  severity?: 'FATAL' | 'ERROR' | 'NOTICE';
  sqlstate: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** ErrorResponse, or with severity NOTICE a NoticeResponse (same fields). */
export function errorResponse(e: ErrorFields): Buffer {
  const severity = e.severity ?? 'FATAL';
  const field = (code: number, value: string) => Buffer.concat([Buffer.from([code]), cstring(value)]);
  const fields: Buffer[] = [field(ERROR_FIELD.severity, severity), field(ERROR_FIELD.severityV, severity),
    field(ERROR_FIELD.code, e.sqlstate), field(ERROR_FIELD.message, e.message)];
  if (e.detail) fields.push(field(ERROR_FIELD.detail, e.detail));
  if (e.hint) fields.push(field(ERROR_FIELD.hint, e.hint));
  fields.push(Buffer.from([0]));
  return message(severity === 'NOTICE' ? MSG.notice : MSG.error, Buffer.concat(fields));
}

/** The ErrorResponse for a typed error; anything else is an internal error without details. */
export function errorFor(err: unknown): Buffer {
  if (err instanceof PgfleetError) {
    const extra = err as PgfleetError & { detail?: string; hint?: string };
    return errorResponse({ sqlstate: err.sqlstate, message: err.message, detail: extra.detail, hint: extra.hint });
  }
  return errorResponse({ sqlstate: 'XX000', message: 'internal error in the pgfleet proxy' });
}

/** PasswordMessage body: a NUL-terminated password. */
export function parsePassword(body: Buffer): string {
  const end = body.indexOf(0);
  if (end !== body.length - 1) throw new ProtocolViolation('malformed password message');
  return body.toString('utf8', 0, end);
}

/** SASLInitialResponse body: mechanism, then the Int32-prefixed client-first-message. */
export function parseSASLInitialResponse(body: Buffer): { mechanism: string; data: string } {
  const end = body.indexOf(0);
  if (end < 0 || body.length < end + 5) throw new ProtocolViolation('malformed SASLInitialResponse message');
  const mechanism = body.toString('utf8', 0, end);
  const length = body.readInt32BE(end + 1);
  if (length < 0 || end + 5 + length !== body.length) throw new ProtocolViolation('malformed SASLInitialResponse message');
  return { mechanism, data: body.toString('utf8', end + 5) };
}
