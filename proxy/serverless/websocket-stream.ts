/**
 * A WebSocket as the byte stream the Postgres handshake and relay read: binary frames in, in
 * order, whatever their boundaries; binary frames out. A text frame is not Postgres: the socket
 * closes with 1003 and a reason. A stream that ends after an ErrorResponse closes with 1008 and
 * that error's message as the reason, for clients that read close frames rather than Postgres; one
 * destroyed over an error the client is not answered in Postgres (a malformed startup) closes
 * with 1002 and the error's message.
 */
import { Duplex } from 'node:stream';
import { PgfleetError } from '../../src/errors.ts';
import { Parser } from 'pg-protocol/dist/parser';
import type { DatabaseError } from 'pg-protocol/dist/messages';
import { MSG } from '../protocol/codes.ts';
import WebSocket from 'ws';

const NORMAL = 1000;
const PROTOCOL_ERROR = 1002;
const UNSUPPORTED_DATA = 1003;
const POLICY_VIOLATION = 1008;
/** A close reason is at most 123 bytes. */
const MAX_REASON = 123;
/**
 * Largest message before the session has authenticated: a startup, a password (or a JWT) and a
 * pipelined first query fit; the gateway holds no more for a peer it does not know (1009 past it).
 */
export const PREAUTH_MESSAGE_BYTES = 64 * 1024;
/** Largest message afterwards (the driver coalesces a tick's writes into one). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * Lifts the message cap of an authenticated session. ws takes one maxPayload per server and keeps
 * it per connection in its receiver (a field of ws 8's, checked by test/serverless-websocket.test.ts).
 */
export function allowLargeMessages(ws: WebSocket): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = MAX_MESSAGE_BYTES;
}

export function webSocketStream(ws: WebSocket): Duplex {
  let lastWrite: Buffer | undefined;
  const stream = new Duplex({
    allowHalfOpen: false,
    read() {
      ws.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      lastWrite = chunk;
      ws.send(chunk, { binary: true }, (err) => callback(err ?? null));
    },
    final(callback) {
      const reason = errorMessageOf(lastWrite);
      ws.close(reason === undefined ? NORMAL : POLICY_VIOLATION, reason === undefined ? undefined : truncate(reason));
      callback();
    },
    destroy(err, callback) {
      if (ws.readyState === WebSocket.OPEN && err) ws.close(PROTOCOL_ERROR, truncate(err instanceof PgfleetError ? err.message : 'internal error'));
      else if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
      callback(err);
    },
  });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) {
      ws.close(UNSUPPORTED_DATA, 'text frames are not accepted: send Postgres protocol bytes in binary frames');
      stream.destroy();
      return;
    }
    if (!stream.push(data)) ws.pause();
  });
  ws.on('close', () => stream.push(null));
  ws.on('error', (err) => stream.destroy(err));
  return stream;
}

/** The message of an ErrorResponse that ends `chunk`, if it is one. */
function errorMessageOf(chunk: Buffer | undefined): string | undefined {
  if (!chunk || chunk[0] !== MSG.error) return undefined;
  let message: string | undefined;
  try {
    new Parser().parse(chunk, (m) => {
      if (m.name === 'error') message = (m as DatabaseError).message;
    });
  } catch {
    return undefined;
  }
  return message;
}

function truncate(reason: string): string {
  let out = reason;
  while (Buffer.byteLength(out) > MAX_REASON) out = out.slice(0, -1);
  return out;
}
