/**
 * A compute session used for SQL over HTTP: a request's messages (sql-codec.ts) go out before one
 * Sync, and the answer comes back as the bytes the compute sent up to ReadyForQuery, followed
 * here message by message only as far as needed (its length, an error, the result's size), so
 * that turning it into JSON can happen elsewhere (sql-codec-pool.ts).
 */
import { serialize } from 'pg-protocol';
import type { DatabaseError } from 'pg-protocol/dist/messages';
import { Parser } from 'pg-protocol/dist/parser';
import type { ComputeAddress } from '../../src/providers/provider.ts';
import type { BackendSession } from '../backend.ts';
import { FrameSplitter } from '../protocol/frame-splitter.ts';
import { MSG } from '../protocol/codes.ts';

/** Postgres refused a statement; `fields` are its ErrorResponse fields, for the client. */
export class StatementError extends Error {
  constructor(readonly fields: DatabaseError) {
    super(fields.message);
  }
}

/** The results' size went over the limit (the statement was cancelled). */
export class ResultTooLarge extends Error {}

/** The compute connection ended in the middle of a request. */
export class ConnectionLost extends Error {}

interface Exchange {
  chunks: Buffer[];
  error: DatabaseError | undefined;
  /** Size of the rows, and the most allowed (0 = no limit). */
  bytes: number;
  maxBytes: number;
  tooLarge: boolean;
  done: () => void;
  fail: (err: Error) => void;
}

// Backend messages can be large (a wide DataRow); Postgres caps them at 1 GB.
const MAX_BACKEND_MESSAGE = 0x40000000;

export class SqlConnection {
  /** Transaction status after the last request: I idle, T in a transaction, E failed transaction. */
  status = 'I';
  closed = false;
  /** When it last went back to the pool. */
  idleSince = 0;
  private readonly splitter = new FrameSplitter(MAX_BACKEND_MESSAGE);
  private exchange: Exchange | undefined;

  constructor(
    private readonly backend: BackendSession,
    /** The compute run it belongs to (a restarted compute has a new address object). */
    readonly address: ComputeAddress,
    /** Cancels the statement running on it (the result grew over the limit, the client left). */
    readonly cancel: () => void,
  ) {
    const onData = (chunk: Buffer) => this.onData(chunk);
    backend.socket.on('data', onData);
    backend.socket.on('close', () => {
      this.closed = true;
      this.exchange?.fail(new ConnectionLost('the connection to the database was lost'));
      this.exchange = undefined;
    });
    if (backend.rest) onData(backend.rest);
    backend.socket.resume();
  }

  /**
   * Sends a request's messages (ending in Sync). Resolves with every byte the compute answered up
   * to ReadyForQuery; an error (Postgres skips the rest to the Sync) rejects with StatementError.
   * `maxBytes` bounds the rows' size: past it the statement is cancelled (ResultTooLarge).
   */
  run(wire: Buffer, maxBytes: number): Promise<Buffer> {
    return this.send(wire, maxBytes);
  }

  /** A simple-protocol query whose results are not needed (resetting the session). */
  async simple(sql: string): Promise<void> {
    await this.send(serialize.query(sql), 0);
  }

  private send(message: Buffer, maxBytes: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new ConnectionLost('the connection to the database was lost'));
    if (this.exchange) return Promise.reject(new Error('a request is already running on this compute session'));
    return new Promise((resolve, reject) => {
      const ex: Exchange = {
        chunks: [], error: undefined, bytes: 0, maxBytes, tooLarge: false,
        done: () => {
          if (ex.tooLarge) reject(new ResultTooLarge(`response is too large (max is ${maxBytes} bytes)`));
          else if (ex.error) reject(new StatementError(ex.error));
          else resolve(Buffer.concat(ex.chunks));
        },
        fail: reject,
      };
      this.exchange = ex;
      this.backend.socket.write(message);
    });
  }

  private onData(chunk: Buffer): void {
    const ex = this.exchange;
    if (ex && !ex.tooLarge) ex.chunks.push(chunk);
    for (const frame of this.splitter.split(chunk)) {
      switch (frame[0]) {
        case MSG.readyForQuery:
          this.status = String.fromCharCode(frame[5]!);
          this.exchange = undefined;
          ex?.done();
          break;
        case MSG.dataRow:
          if (!ex || ex.tooLarge) break;
          ex.bytes += frame.length;
          if (ex.maxBytes > 0 && ex.bytes > ex.maxBytes) {
            ex.tooLarge = true;
            ex.chunks = [];
            this.cancel();
          }
          break;
        case MSG.copyIn:
          this.backend.socket.write(serialize.copyFail('COPY FROM STDIN is not supported over HTTP'));
          break;
        case MSG.error:
          if (ex) ex.error ??= errorFields(frame);
          break;
      }
    }
  }

  /** Says goodbye to the compute (Terminate) and closes. */
  close(): void {
    this.closed = true;
    this.backend.socket.end(serialize.end());
  }

  /** Ends the connection at once (its compute is being suspended, the request was abandoned). */
  destroy(): void {
    this.backend.socket.destroy();
  }
}

/** An ErrorResponse's fields, read by pg-protocol's parser. */
function errorFields(frame: Buffer): DatabaseError {
  let error: DatabaseError | undefined;
  new Parser().parse(frame, (m) => {
    error = m as DatabaseError;
  });
  return error!;
}
