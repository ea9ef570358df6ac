/**
 * A client of a `-pooler` endpoint. Between transactions it holds no backend: its first
 * message takes one from the pool (with its settings put on it when they differ), and the
 * backend goes back when ReadyForQuery says idle with nothing left in flight (its messages reach
 * the backend through ClientMessages, which keeps its prepared statements). A client that goes
 * away mid-transaction leaves a backend that is rolled back first.
 */
import type { Duplex } from 'node:stream';
import type { PgfleetError } from '../../src/errors.ts';
import { type CancelRoute, type CancelTarget, sendCancel } from '../cancel.ts';
import { errorFor, errorResponse, readyForQuery } from '../protocol/messages.ts';
import type { Session } from '../session.ts';
import type { BackendPool, PoolWaiter } from './backend-pool.ts';
import { FrameSplitter } from '../protocol/frame-splitter.ts';
import { MSG, TX_IDLE } from '../protocol/codes.ts';
import { copyFailMessage, queryMessage, queryText, syncMessage } from '../protocol/extended-query.ts';
import { ClientMessages } from './client-messages.ts';
import type { BackendOwner, PooledBackend, Slot } from './pooled-backend.ts';
import { type Settings, fingerprint } from './session-settings.ts';
import { scanSql } from './sql-scan.ts';

/** Largest message a pooled client may send (a Bind with big values, a COPY row). */
const MAX_CLIENT_MESSAGE = 64 * 1024 * 1024;

const SLOT_HIDDEN_SYNC: Slot = { ends: 'sync', hidden: true };
const SLOT_HIDDEN_QUERY: Slot = { ends: 'query', hidden: true };

export type PooledOutcome = 'client_closed' | 'compute_closed' | 'error';

export interface PooledClientInit {
  socket: Duplex;
  pool: BackendPool;
  /** Settings from the startup packet. */
  settings: Settings;
  /** Host of the same endpoint without pooling, named in refusals. */
  unpooledHost: string;
  session: Omit<Session, 'terminate'>;
  /** A backend another client used last is reset first (DISCARD ALL). */
  resetSessions: boolean;
}

let clientIds = 0;

export class PooledClient implements BackendOwner, CancelRoute, PoolWaiter, Session {
  endpointId: string;
  branchId: string;
  databaseId: string;
  partnerId: string;
  role: string;
  bytesFromClient = 0;
  bytesToClient = 0;

  private readonly id = ++clientIds;
  private readonly socket: Duplex;
  private readonly pool: BackendPool;
  /** The backend this client last used: taken again when idle, it needs no reset. */
  private lastBackend: PooledBackend | undefined;
  private readonly resetSessions: boolean;
  private readonly startupSettings: Settings;
  private settings: Settings;
  private settingsPrint: string;
  private readonly splitter = new FrameSplitter(MAX_CLIENT_MESSAGE);
  private backend: PooledBackend | undefined;
  /** Messages waiting for a backend (the socket is paused meanwhile). */
  private queued: Buffer[] | undefined;
  private readonly messages: ClientMessages;
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
    this.socket = init.socket;
    this.pool = init.pool;
    this.messages = new ClientMessages({
      unpooledHost: init.unpooledHost,
      discardSettings: () => this.changeSettings(this.startupSettings),
      terminated: () => this.close('client_closed'),
    });
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
          this.messages.route(this.backend, frames[i]!);
        } else if (this.answerWithoutBackend(frames[i]!)) {
          continue;
        } else if (this.takeIdleBackend()) {
          this.messages.route(this.backend!, frames[i]!);
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
        this.toClient(this.messages.runLocal(local));
        this.toClient(readyForQuery(TX_IDLE));
        return true;
      }
      default:
        return false;
    }
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
    if (reset) backend.discardSession();
    backend.servedClient = this.id;
    backend.applySettings(this.settings, this.settingsPrint, !reset, (error) => {
      // A startup parameter the compute refuses (a bad TimeZone, say) ends the session, as at startup.
      this.toClient(error);
      this.close('error');
    });
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
    backend.readSession((settings) => {
      if (!this.closed) this.changeSettings(settings);
      this.readBackDone = true;
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
