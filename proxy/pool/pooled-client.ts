/**
 * A client of a `-pooler` endpoint. Between transactions it holds no backend: its first
 * message takes one from the pool (with its settings put on it when they differ), and the
 * backend goes back when ReadyForQuery says idle with nothing left in flight. Named prepared
 * statements live here and are prepared, under their content name, on whichever backend runs
 * them. A client that goes away mid-transaction leaves a backend that is rolled back first.
 */
import type { Duplex } from 'node:stream';
import type { PgfleetError } from '../../src/errors.ts';
import { type CancelTarget, sendCancel } from '../cancel.ts';
import { errorFor, errorResponse, readyForQuery } from '../protocol/messages.ts';
import type { Session } from '../session.ts';
import type { BackendPool, PoolWaiter } from './backend-pool.ts';
import { FrameSplitter } from '../protocol/frame-splitter.ts';
import { MSG, TARGET, TX_IDLE } from '../protocol/codes.ts';
import {
  bindPlain, closeComplete, commandComplete, copyFailMessage, executePlain, parseComplete, parseMessage, parsePlain,
  queryMessage, queryText, readBindStatement, readParse, readTarget, renameIn, syncMessage, targetMessage,
} from '../protocol/extended-query.ts';
import { type ClientStatement, serverStatementName } from './prepared.ts';
import type { BackendOwner, PooledBackend, Slot } from './pooled-backend.ts';
import { type Settings, READ_SESSION_SQL, applySettingsSql, fingerprint } from './session-settings.ts';
import { type LocalCommand, scanSql } from './sql-scan.ts';

/** Largest message a pooled client may send (a Bind with big values, a COPY row). */
const MAX_CLIENT_MESSAGE = 64 * 1024 * 1024;

export type PooledOutcome = 'client_closed' | 'compute_closed' | 'error';

export interface PooledClientInit {
  socket: Duplex;
  pool: BackendPool;
  /** Settings from the startup packet. */
  settings: Settings;
  /** Host of the same endpoint without pooling, named in refusals. */
  unpooledHost: string;
  session: Omit<Session, 'terminate'>;
  /** A backend another client used last is reset first (RESET). */
  resetSessions: boolean;
}

const SLOT_PARSE: Slot = { ends: 'parse' };
const SLOT_BIND: Slot = { ends: 'bind' };
const SLOT_DESCRIBE: Slot = { ends: 'describe' };
const SLOT_EXECUTE: Slot = { ends: 'execute' };
const SLOT_CLOSE: Slot = { ends: 'close' };
const SLOT_SYNC: Slot = { ends: 'sync' };
const SLOT_QUERY: Slot = { ends: 'query' };
const SLOT_HIDDEN_PARSE: Slot = { ends: 'parse', hidden: true };
const SLOT_HIDDEN_BIND: Slot = { ends: 'bind', hidden: true };
const SLOT_HIDDEN_CLOSE: Slot = { ends: 'close', hidden: true };
const SLOT_HIDDEN_SYNC: Slot = { ends: 'sync', hidden: true };
const SLOT_HIDDEN_QUERY: Slot = { ends: 'query', hidden: true };
/**
 * What a backend is given before it serves a client other than its last: everything a session
 * may hold beyond a transaction goes (SET ROLE, every setting, custom ones too, temporary objects,
 * advisory locks, LISTEN, prepared statements and cursors, sequence state), however it was taken
 * (a DO block, a function, EXECUTE). Sent ahead of the client's messages, answered out of sight.
 */
const RESET = queryMessage('DISCARD ALL');
let clientIds = 0;

export class PooledClient implements BackendOwner, PoolWaiter, Session {
  endpointId: string;
  branchId: string;
  databaseId: string;
  partnerId: string;
  role: string;
  clientAddress: string;
  startedAt: Date;
  bytesFromClient = 0;
  bytesToClient = 0;

  private readonly id = ++clientIds;
  private readonly socket: Duplex;
  private readonly pool: BackendPool;
  /** The backend this client last used: taken again when idle, it needs no reset. */
  private lastBackend: PooledBackend | undefined;
  private readonly unpooledHost: string;
  private readonly resetSessions: boolean;
  private readonly startupSettings: Settings;
  private settings: Settings;
  private settingsPrint: string;
  private readonly splitter = new FrameSplitter(MAX_CLIENT_MESSAGE);
  private backend: PooledBackend | undefined;
  /** Messages waiting for a backend (the socket is paused meanwhile). */
  private queued: Buffer[] | undefined;
  private statements: Map<string, ClientStatement> | undefined;
  private out: Buffer[] | undefined;
  private closed = false;
  private finished = false;
  /** A read-back finished: the messages that waited for it go on. */
  private readBackDone = false;
  private outcome: PooledOutcome = 'client_closed';
  /** Told once, when the client is gone (callbacks rather than promises: idle clients are many). */
  private endListeners: ((outcome: PooledOutcome) => void)[] = [];

  constructor(init: PooledClientInit) {
    this.endpointId = init.session.endpointId;
    this.branchId = init.session.branchId;
    this.databaseId = init.session.databaseId;
    this.partnerId = init.session.partnerId;
    this.role = init.session.role;
    this.clientAddress = init.session.clientAddress;
    this.startedAt = init.session.startedAt;
    this.socket = init.socket;
    this.pool = init.pool;
    this.unpooledHost = init.unpooledHost;
    this.resetSessions = init.resetSessions;
    this.startupSettings = init.settings;
    this.settings = init.settings;
    this.settingsPrint = fingerprint(init.settings);
  }

  /** `fn` runs once the client is gone and its backend (if any) handed back. */
  whenEnded(fn: (outcome: PooledOutcome) => void): void {
    if (this.finished) fn(this.outcome);
    else this.endListeners.push(fn);
  }

  /** Starts reading; `early` is what the client sent right after its startup. */
  start(early: Buffer): void {
    this.socket.on('data', this.onData);
    this.socket.on('close', this.gone);
    this.socket.on('end', this.gone);
    this.socket.on('error', this.gone);
    // It may have gone while the startup was being answered.
    if (this.socket.destroyed) {
      this.gone();
      return;
    }
    if (early.length > 0) this.onData(early);
    this.socket.resume();
  }

  // --- the client side ---

  private readonly onData = (chunk: Buffer): void => {
    if (this.closed) return;
    this.bytesFromClient += chunk.length;
    let frames: Buffer[];
    try {
      frames = this.splitter.split(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (this.queued) this.queued.push(...frames);
    else this.process(frames);
  };

  private process(frames: Buffer[]): void {
    try {
      for (let i = 0; i < frames.length && !this.closed; i++) {
        if (this.backend) {
          this.handle(frames[i]!);
        } else if (this.answerWithoutBackend(frames[i]!)) {
          continue;
        } else if (this.takeIdleBackend()) {
          this.handle(frames[i]!);
        } else {
          this.queued = frames.slice(i);
          this.socket.pause();
          this.takeBackend();
          break;
        }
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    const backend = this.backend;
    if (backend && !backend.flush() && !this.queued) {
      // The compute reads slower than the client writes (a big COPY): wait for it.
      this.socket.pause();
      backend.socket.once('drain', () => this.queued || this.socket.resume());
    }
    this.flushClient();
    this.maybeRelease();
  }

  /** What needs no backend between transactions: Terminate, a lone Sync or Flush, DEALLOCATE, DISCARD ALL. */
  private answerWithoutBackend(frame: Buffer): boolean {
    switch (frame[0]) {
      case MSG.terminate:
        this.close('client_closed');
        return true;
      case MSG.sync:
        this.toClient(readyForQuery(TX_IDLE));
        return true;
      case MSG.flush:
        return true;
      case MSG.query: {
        const local = scanSql(queryText(frame))?.local;
        if (!local) return false;
        this.toClient(this.runLocal(local));
        this.toClient(readyForQuery(TX_IDLE));
        return true;
      }
      default:
        return false;
    }
  }

  /** DEALLOCATE and DISCARD ALL act on what the proxy keeps for the client; the command tag is the answer. */
  private runLocal(command: LocalCommand): Buffer {
    if (command.kind === 'deallocate') {
      this.statements?.delete(command.name);
      return commandComplete('DEALLOCATE');
    }
    this.statements = undefined;
    if (command.kind === 'deallocate-all') return commandComplete('DEALLOCATE ALL');
    this.changeSettings(this.startupSettings);
    return commandComplete('DISCARD ALL');
  }

  private changeSettings(settings: Settings): void {
    this.settings = settings;
    this.settingsPrint = fingerprint(settings);
  }

  private takeIdleBackend(): boolean {
    const backend = this.pool.takeIdle(this.lastBackend);
    if (backend) this.attach(backend);
    return backend !== undefined;
  }

  private takeBackend(): void {
    this.pool.acquire(this).then(
      (backend) => {
        if (this.closed) {
          this.pool.release(backend);
          return;
        }
        this.attach(backend);
        const queued = this.queued ?? [];
        this.queued = undefined;
        this.socket.resume();
        this.process(queued);
      },
      (err) => this.fail(err),
    );
  }

  private attach(backend: PooledBackend): void {
    this.backend = backend;
    this.lastBackend = backend;
    backend.owner = this;
    const reset = this.resetSessions && backend.servedClient !== undefined && backend.servedClient !== this.id;
    if (reset) {
      backend.send(RESET, { ends: 'query', hidden: true, failed: () => backend.socket.destroy() });
      backend.statements.replaceWith([]);
      backend.settings = new Map();
      backend.settingsPrint = '';
    }
    backend.servedClient = this.id;
    if (backend.settingsPrint === this.settingsPrint) return;
    const previous = { settings: backend.settings, print: backend.settingsPrint };
    backend.settings = this.settings;
    backend.settingsPrint = this.settingsPrint;
    backend.send(queryMessage(applySettingsSql(this.settings, !reset)), {
      ends: 'query', hidden: true,
      failed: (error) => {
        // A startup parameter the compute refuses (a bad TimeZone, say) ends the session, as at startup.
        backend.settings = previous.settings;
        backend.settingsPrint = previous.print;
        this.toClient(error);
        this.close('error');
      },
    });
  }

  /** One message of the client to its backend, statement names rewritten. */
  private handle(frame: Buffer): void {
    const backend = this.backend!;
    switch (frame[0]) {
      case MSG.query:
        this.query(backend, frame);
        return;
      case MSG.parse:
        backend.unsynced = true;
        this.parse(backend, frame);
        return;
      case MSG.bind: {
        backend.unsynced = true;
        const ref = readBindStatement(frame);
        const statement = this.prepared(backend, ref.name);
        backend.send(statement ? renameIn(frame, ref.start, ref.end, statement.serverName) : frame, SLOT_BIND);
        return;
      }
      case MSG.describe: {
        backend.unsynced = true;
        const target = readTarget(frame);
        const statement = target.kind === TARGET.statement ? this.prepared(backend, target.name) : undefined;
        backend.send(statement ? targetMessage(MSG.describe, TARGET.statement, statement.serverName) : frame, SLOT_DESCRIBE);
        return;
      }
      case MSG.close: {
        backend.unsynced = true;
        const target = readTarget(frame);
        if (target.kind === TARGET.statement && target.name !== '') {
          // The backend keeps it for others; the client's name is gone.
          this.statements?.delete(target.name);
          backend.answer(closeComplete);
        } else {
          backend.send(frame, SLOT_CLOSE);
        }
        return;
      }
      case MSG.execute:
        backend.unsynced = true;
        backend.send(frame, SLOT_EXECUTE);
        return;
      case MSG.sync:
        backend.unsynced = false;
        backend.send(frame, SLOT_SYNC);
        return;
      case MSG.functionCall:
        backend.send(frame, SLOT_QUERY);
        return;
      case MSG.terminate:
        this.close('client_closed');
        return;
      default: // Flush, CopyData, CopyDone, CopyFail
        backend.send(frame);
    }
  }

  private query(backend: PooledBackend, frame: Buffer): void {
    const scan = scanSql(queryText(frame));
    if (scan?.refused) {
      backend.send(queryMessage(this.refusalSql(scan.refused)), SLOT_QUERY);
      return;
    }
    if (scan?.local && scan.local.kind !== 'discard-all') {
      const answer = this.runLocal(scan.local);
      backend.answer(() => Buffer.concat([answer, readyForQuery(backend.txStatus)]));
      return;
    }
    if (scan?.touchesSession) backend.resync = true;
    backend.send(frame, SLOT_QUERY);
  }

  private parse(backend: PooledBackend, frame: Buffer): void {
    const parse = readParse(frame);
    const scan = scanSql(parse.query);
    if (scan?.refused) {
      // The backend raises the error in the Parse's place, so that it aborts what Postgres would.
      backend.send(parsePlain('', this.refusalSql(scan.refused)), SLOT_HIDDEN_PARSE);
      backend.send(bindPlain(), SLOT_HIDDEN_BIND);
      backend.send(executePlain(), SLOT_EXECUTE);
      return;
    }
    if (scan?.touchesSession) backend.resync = true;
    if (parse.name === '') {
      backend.send(frame, SLOT_PARSE);
      return;
    }
    const statement: ClientStatement = { serverName: serverStatementName(parse.rest), rest: parse.rest };
    (this.statements ??= new Map()).set(parse.name, statement);
    const forget = (ok: boolean) => {
      if (!ok && this.statements?.get(parse.name) === statement) this.statements.delete(parse.name);
    };
    if (backend.statements.use(statement.serverName)) {
      backend.answer(parseComplete, forget);
      return;
    }
    this.prepareOn(backend, statement, { ends: 'parse', done: forget });
  }

  /** The client's statement, prepared on the backend when it is not there yet. */
  private prepared(backend: PooledBackend, name: string): ClientStatement | undefined {
    if (name === '') return undefined;
    const statement = this.statements?.get(name);
    if (!statement) return undefined; // the backend answers "does not exist" with the client's name
    if (!backend.statements.use(statement.serverName)) this.prepareOn(backend, statement, SLOT_HIDDEN_PARSE);
    return statement;
  }

  private prepareOn(backend: PooledBackend, statement: ClientStatement, slot: Slot): void {
    for (const evicted of backend.statements.add(statement.serverName)) {
      backend.send(targetMessage(MSG.close, TARGET.statement, evicted), { ...SLOT_HIDDEN_CLOSE, done: (ok) => ok || backend.statements.add(evicted) });
    }
    const done = slot.done;
    backend.send(parseMessage(statement.serverName, statement.rest), {
      ...slot,
      done: (ok) => {
        if (!ok) backend.statements.delete(statement.serverName);
        done?.(ok);
      },
    });
  }

  private refusalSql(feature: string): string {
    const text = (s: string) => `'${s.replace(/'/g, "''").replace(/\$/g, '')}'`;
    const message = `${feature} is not available on a pooled connection`;
    const hint = `Connect to the unpooled endpoint ${this.unpooledHost} (the host name without -pooler) for session features.`;
    return `DO $pgfleet$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = ${text(message)}, HINT = ${text(hint)}; END$pgfleet$`;
  }

  // --- the backend side ---

  toClient(frame: Buffer): void {
    if (!this.closed) (this.out ??= []).push(frame);
  }

  notice(message: Buffer): void {
    this.toClient(message);
    this.flushClient();
  }

  private flushClient(): void {
    const out = this.out;
    if (!out) return;
    const data = out.length === 1 ? out[0]! : Buffer.concat(out);
    this.out = undefined;
    this.bytesToClient += data.length;
    if (!this.socket.write(data) && this.backend) {
      // A slow reader: stop reading the backend until the client catches up.
      const backend = this.backend;
      backend.socket.pause();
      this.socket.once('drain', () => backend.socket.resume());
    }
  }

  backendIdle(): void {
    this.flushClient();
    if (this.readBackDone) {
      this.readBackDone = false;
      const queued = this.queued ?? [];
      this.queued = undefined;
      if (!this.closed) this.socket.resume();
      this.process(queued);
      return;
    }
    this.maybeRelease();
  }

  /** The session ends as Postgres ends one: with the compute's own FATAL, or one of pgfleet's when it sent none. */
  backendLost(farewell: Buffer | undefined): void {
    this.backend = undefined;
    if (this.closed) return;
    this.toClient(farewell ?? errorResponse({ sqlstate: '08006', message: 'the connection to the database was lost' }));
    this.close('compute_closed');
  }

  /**
   * Hands the backend back when its transaction is over and nothing is in flight; first
   * reads back settings and statements when the client may have changed them, or rolls back
   * what a departed client left open.
   */
  private maybeRelease(): void {
    const backend = this.backend;
    if (!backend || backend.busy || this.queued) return;
    if (this.closed) {
      if (backend.txStatus !== TX_IDLE || backend.unsynced) {
        if (backend.unsynced) backend.send(syncMessage(), SLOT_HIDDEN_SYNC);
        else backend.send(queryMessage('ROLLBACK'), SLOT_HIDDEN_QUERY);
        backend.unsynced = false;
        backend.flush();
        return;
      }
    } else if (backend.unsynced || backend.txStatus !== TX_IDLE) {
      return;
    }
    if (backend.resync) {
      backend.resync = false;
      this.readBack(backend);
      backend.flush();
      return;
    }
    this.backend = undefined;
    this.pool.release(backend);
  }

  /** What a transaction left on the backend becomes the client's own (and the backend's known) state. */
  private readBack(backend: PooledBackend): void {
    // The client's next messages wait until the answer is in: a statement they prepare must not
    // be lost to a list read before it existed.
    this.queued ??= [];
    this.socket.pause();
    const settings: Settings = new Map();
    const statements: string[] = [];
    backend.send(queryMessage(READ_SESSION_SQL), {
      ends: 'query', hidden: true,
      row: (frame) => {
        const fields = dataRowTexts(frame);
        if (fields[0] === 's') settings.set(fields[1]!, fields[2]!);
        else statements.push(fields[1]!);
      },
      failed: () => backend.socket.destroy(),
      done: (ok) => {
        if (!ok) return;
        backend.settings = settings;
        backend.settingsPrint = fingerprint(settings);
        backend.statements.replaceWith(statements.filter((n) => n.startsWith('pgf_')));
        if (!this.closed) this.changeSettings(settings);
        if (statements.some((n) => !n.startsWith('pgf_'))) backend.socket.destroy(); // never hand another client a statement it did not make
        this.readBackDone = true;
      },
    });
  }

  // --- the end ---

  /** Ends the session with this error (its compute is being suspended over a quota). */
  terminate(reason: PgfleetError): void {
    this.toClient(errorFor(reason));
    this.close('compute_closed');
  }

  private fail(err: unknown): void {
    this.toClient(errorFor(err));
    this.close('error');
  }

  private close(outcome: PooledOutcome): void {
    if (this.closed) return;
    this.outcome = outcome;
    this.flushClient();
    this.closed = true;
    this.socket.end();
    this.gone();
  }

  private readonly gone = (): void => {
    if (this.finished) return;
    this.finished = true;
    if (!this.closed) {
      this.closed = true;
      this.outcome = 'client_closed';
    }
    if (this.queued) {
      this.pool.cancelWait(this);
      this.queued = undefined;
    }
    const backend = this.backend;
    if (backend && !backend.closed) {
      // Whatever it was doing for this client is no longer wanted.
      if (backend.copyIn) backend.send(copyFailMessage('the client went away'));
      if (backend.busy) this.cancelQuery();
      this.maybeRelease();
    }
    for (const fn of this.endListeners.splice(0)) fn(this.outcome);
  };

  /**
   * Where a cancel request for this client goes: the backend running its query, if any. That
   * backend is not handed to another client until the cancel has been delivered.
   */
  cancelTarget(): CancelTarget | undefined {
    const backend = this.backend;
    if (!backend || !backend.busy) return undefined;
    return { address: backend.address, backendPid: backend.pid, backendSecret: backend.secret, settled: backend.cancelStarted() };
  }

  private cancelQuery(): void {
    const target = this.cancelTarget();
    if (target) void sendCancel(target).catch(() => {});
  }
}

/** The text fields of a DataRow (NULL as undefined). */
function dataRowTexts(frame: Buffer): (string | undefined)[] {
  const count = frame.readUInt16BE(5);
  const out: (string | undefined)[] = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    const length = frame.readInt32BE(at);
    at += 4;
    if (length < 0) {
      out.push(undefined);
    } else {
      out.push(frame.toString('utf8', at, at + length));
      at += length;
    }
  }
  return out;
}
