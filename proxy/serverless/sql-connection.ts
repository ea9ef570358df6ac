/**
 * A compute session used for SQL over HTTP: statements go over the extended protocol with text
 * results, all of a request before one Sync (one round trip), and the answers are collected into
 * results. Written on pg-protocol's serializer and parser; node-postgres's Client would redo the
 * startup that proxy/backend.ts already did.
 */
import { serialize } from 'pg-protocol';
import type { BackendMessage, CommandCompleteMessage, DataRowMessage, DatabaseError, Field, ReadyForQueryMessage, RowDescriptionMessage } from 'pg-protocol/dist/messages';
import { Parser } from 'pg-protocol/dist/parser';
import type { ComputeAddress } from '../../src/providers/provider.ts';
import type { BackendSession } from '../backend.ts';
import type { Statement } from './sql-request.ts';

export interface StatementResult {
  fields: Field[];
  rows: (string | null)[][];
  /** The command tag (`SELECT 3`, `INSERT 0 1`); empty for an empty query. */
  tag: string;
}

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
  results: StatementResult[];
  current: StatementResult;
  error: DatabaseError | undefined;
  /** Size of the rows kept, and the most allowed (0 = no limit). */
  bytes: number;
  maxBytes: number;
  tooLarge: boolean;
  done: () => void;
  fail: (err: Error) => void;
}

export class SqlConnection {
  /** Transaction status after the last request: I idle, T in a transaction, E failed transaction. */
  status = 'I';
  closed = false;
  /** When it last went back to the pool. */
  idleSince = 0;
  private readonly parser = new Parser();
  private exchange: Exchange | undefined;

  constructor(
    private readonly backend: BackendSession,
    /** The compute run it belongs to (a restarted compute has a new address object). */
    readonly address: ComputeAddress,
    /** Cancels the statement running on it (the result grew over the limit, the client left). */
    readonly cancel: () => void,
  ) {
    const onData = (chunk: Buffer) => this.parser.parse(chunk, (m) => this.onMessage(m));
    backend.socket.on('data', onData);
    backend.socket.on('close', () => {
      this.closed = true;
      this.exchange?.fail(new ConnectionLost('the connection to the database was lost'));
      this.exchange = undefined;
    });
    if (backend.rest.length > 0) onData(backend.rest);
    backend.socket.resume();
  }

  /**
   * Runs the statements in order before one Sync. Any error stops the rest (Postgres skips to the
   * Sync) and rejects with StatementError. `maxBytes` bounds the values kept.
   */
  run(statements: Statement[], maxBytes: number): Promise<StatementResult[]> {
    const out: Buffer[] = [];
    for (const s of statements) {
      out.push(
        serialize.parse({ text: s.text }),
        serialize.bind({ values: s.params }),
        serialize.describe({ type: 'P' }),
        serialize.execute({ rows: 0 }),
      );
    }
    out.push(serialize.sync());
    return this.send(Buffer.concat(out), maxBytes);
  }

  /** A simple-protocol query whose results are not needed (resetting the session). */
  async simple(sql: string): Promise<void> {
    await this.send(serialize.query(sql), 0);
  }

  private send(message: Buffer, maxBytes: number): Promise<StatementResult[]> {
    if (this.closed) return Promise.reject(new ConnectionLost('the connection to the database was lost'));
    if (this.exchange) return Promise.reject(new Error('a request is already running on this compute session'));
    return new Promise((resolve, reject) => {
      const ex: Exchange = {
        results: [], current: emptyResult(), error: undefined, bytes: 0, maxBytes, tooLarge: false,
        done: () => {
          if (ex.tooLarge) reject(new ResultTooLarge(`response is too large (max is ${maxBytes} bytes)`));
          else if (ex.error) reject(new StatementError(ex.error));
          else resolve(ex.results);
        },
        fail: reject,
      };
      this.exchange = ex;
      this.backend.socket.write(message);
    });
  }

  private onMessage(m: BackendMessage): void {
    const ex = this.exchange;
    switch (m.name) {
      case 'readyForQuery':
        this.status = (m as ReadyForQueryMessage).status;
        this.exchange = undefined;
        ex?.done();
        return;
      case 'parameterStatus':
      case 'notice':
      case 'notification':
        return;
    }
    if (!ex) return;
    switch (m.name) {
      case 'rowDescription':
        ex.current.fields = (m as RowDescriptionMessage).fields;
        break;
      case 'dataRow': {
        if (ex.tooLarge) break;
        const row = (m as DataRowMessage).fields as (string | null)[];
        ex.bytes += m.length;
        if (ex.maxBytes > 0 && ex.bytes > ex.maxBytes) {
          ex.tooLarge = true;
          ex.results = [];
          ex.current = emptyResult();
          this.cancel();
          break;
        }
        ex.current.rows.push(row);
        break;
      }
      case 'commandComplete':
        ex.current.tag = (m as CommandCompleteMessage).text;
        ex.results.push(ex.current);
        ex.current = emptyResult();
        break;
      case 'emptyQuery':
        ex.results.push(ex.current);
        ex.current = emptyResult();
        break;
      case 'copyInResponse':
        this.backend.socket.write(serialize.copyFail('COPY FROM STDIN is not supported over HTTP'));
        break;
      case 'error':
        ex.error ??= m as DatabaseError;
        break;
      // parseComplete, bindComplete, noData, copyOutResponse, copyData, copyDone: nothing to keep
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

function emptyResult(): StatementResult {
  return { fields: [], rows: [], tag: '' };
}
