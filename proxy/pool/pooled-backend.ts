/**
 * One backend connection of a pool. It keeps, in order, what each message sent to it will
 * be answered with (a "slot"), so that answers the proxy gives itself (a ParseComplete for a
 * statement the backend already has) come out in their place, answers to the proxy's own
 * messages (a Parse it added, settings it applied) are hidden from the client, and an error
 * drops what the backend will skip until Sync. ReadyForQuery tells the transaction status.
 */
import type { Duplex } from 'node:stream';
import type { Lease } from '../../src/compute-target.ts';
import type { ComputeAddress } from '../../src/providers/provider.ts';
import { endsSession } from '../protocol/message-framing.ts';
import { FrameSplitter } from '../protocol/frame-splitter.ts';
import { MSG, TX_IDLE } from '../protocol/codes.ts';
import { queryMessage, readDataRowTexts } from '../protocol/extended-query.ts';
import { TERMINATE } from '../protocol/messages.ts';
import { SERVER_STATEMENT_PREFIX, StatementCache } from './prepared.ts';
import { type Settings, READ_SESSION_SQL, applySettingsSql, fingerprint } from './session-settings.ts';

/** The message that completes a slot. */
export type SlotEnd = 'parse' | 'bind' | 'describe' | 'execute' | 'close' | 'sync' | 'query';

export interface Slot {
  ends: SlotEnd;
  /** Answers go nowhere (the proxy's own message); an error of a hidden query goes to `failed`. */
  hidden?: boolean;
  /** Answered by the proxy instead of the backend. */
  synthetic?: () => Buffer;
  /** Completed (true), or failed or skipped after an error (false). */
  done?: (ok: boolean) => void;
  /** DataRow frames of a hidden query. */
  row?: (frame: Buffer) => void;
  /** ErrorResponse of a hidden query. */
  failed?: (frame: Buffer) => void;
}

/** The client a backend serves right now. */
export interface BackendOwner {
  toClient(frame: Buffer): void;
  /** The backend answered what it was sent; the owner writes to its client and may let it go. */
  backendIdle(): void;
  /** The backend's connection ended under the owner; `farewell` is the FATAL it ended with, if it sent one. */
  backendLost(farewell: Buffer | undefined): void;
}

const EXTENDED: ReadonlySet<SlotEnd> = new Set(['parse', 'bind', 'describe', 'execute', 'close']);

/** Which slot a backend message completes, by message type. */
function completes(type: number): SlotEnd | undefined {
  switch (type) {
    case MSG.parseComplete: return 'parse';
    case MSG.bindComplete: return 'bind';
    case MSG.closeComplete: return 'close';
    case MSG.rowDescription:
    case MSG.noData: return 'describe';
    case MSG.commandComplete:
    case MSG.emptyQuery:
    case MSG.portalSuspended: return 'execute';
    default: return undefined;
  }
}

/**
 * What a backend is given before it serves a client other than its last: everything a session
 * may hold beyond a transaction goes (SET ROLE, every setting, custom ones too, temporary objects,
 * advisory locks, LISTEN, prepared statements and cursors, sequence state), however it was taken
 * (a DO block, a function, EXECUTE). Sent ahead of the client's messages, answered out of sight.
 */
const RESET = queryMessage('DISCARD ALL');

// Backend messages can be large (a wide DataRow); Postgres caps them at 1 GB.
const MAX_BACKEND_MESSAGE = 0x40000000;

export class PooledBackend {
  readonly statements: StatementCache;
  /** Session settings on this backend, as the proxy put them or last read them. */
  settings: Settings = new Map();
  settingsPrint = '';
  txStatus = TX_IDLE;
  /** A message of the client's extended query went out after the last Sync. */
  unsynced = false;
  /** The backend skips the client's extended messages until its next Sync (after an error). */
  skipping = false;
  copyIn = false;
  /** Something may have changed settings or prepared statements: read them back before reuse. */
  resync = false;
  owner: BackendOwner | undefined;
  /** The client whose session state the backend may hold (the last it served), by its id. */
  servedClient: number | undefined;
  lastUsed = Date.now();
  /** Cancel requests on their way to this backend: it is not reused until they are through. */
  private cancelling = 0;
  private afterCancels: (() => void) | undefined;
  closed = false;
  private readonly slots: Slot[] = [];
  private readonly splitter = new FrameSplitter(MAX_BACKEND_MESSAGE);
  private out: Buffer[] = [];
  private onClosed: (() => void) | undefined;
  /** The FATAL the compute ended the session with (pg_terminate_backend, a shutdown). */
  private farewell: Buffer | undefined;

  constructor(
    readonly socket: Duplex,
    readonly address: ComputeAddress,
    readonly pid: number,
    readonly secret: number,
    private readonly lease: Lease,
    maxPrepared: number,
  ) {
    this.statements = new StatementCache(maxPrepared);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.gone());
    socket.on('error', () => {});
    socket.resume(); // startBackend's reader left it paused
  }

  /** Called once when the connection ends (the pool forgets it). */
  whenClosed(fn: () => void): void {
    this.onClosed = fn;
  }

  /** A cancel request for this backend is being sent; call the result when it is through. */
  cancelStarted(): () => void {
    this.cancelling++;
    let settled = false;
    return () => {
      if (settled) return;
      settled = true;
      if (--this.cancelling === 0 && this.afterCancels) {
        const next = this.afterCancels;
        this.afterCancels = undefined;
        next();
      }
    };
  }

  /** Runs `fn` now, or once no cancel request is on its way (one could hit the next client's query). */
  afterCancelsSettle(fn: () => void): boolean {
    if (this.cancelling === 0) return false;
    this.afterCancels = fn;
    return true;
  }

  get busy(): boolean {
    return this.slots.length > 0;
  }

  /**
   * Sends a message with what will answer it. While the backend skips after an error, nothing
   * but Sync is sent (it would ignore it) and the slot fails at once.
   */
  send(frame: Buffer, slot?: Slot): void {
    if (this.skipping && slot?.ends !== 'sync') {
      slot?.done?.(false);
      return;
    }
    this.out.push(frame);
    if (slot) {
      this.slots.push(slot);
      if (slot.ends === 'sync') this.skipping = false;
    }
  }

  /** An answer the proxy gives in the backend's place, in its turn. */
  answer(synthetic: () => Buffer, done?: (ok: boolean) => void): void {
    if (this.skipping) {
      done?.(false);
      return;
    }
    this.slots.push({ ends: 'parse', synthetic, done });
    this.drain();
  }

  /** Before it serves a client other than its last: nothing of the previous session is left. */
  discardSession(): void {
    this.send(RESET, { ends: 'query', hidden: true, failed: () => this.socket.destroy() });
    this.statements.replaceWith([]);
    this.settings = new Map();
    this.settingsPrint = '';
  }

  /** Puts a client's settings on the backend; `refused` gets the error when the compute refuses one. */
  applySettings(settings: Settings, print: string, onlyChanged: boolean, refused: (error: Buffer) => void): void {
    if (this.settingsPrint === print) return;
    const previous = { settings: this.settings, print: this.settingsPrint };
    this.settings = settings;
    this.settingsPrint = print;
    this.send(queryMessage(applySettingsSql(settings, onlyChanged)), {
      ends: 'query', hidden: true,
      failed: (error) => {
        this.settings = previous.settings;
        this.settingsPrint = previous.print;
        refused(error);
      },
    });
  }

  /**
   * Reads back what a transaction may have left on the session (settings, prepared statements);
   * `done` gets the settings once the answer is in. A statement pgfleet did not make closes the
   * backend: another client must never be handed it.
   */
  readSession(done: (settings: Settings) => void): void {
    const settings: Settings = new Map();
    const statements: string[] = [];
    this.send(queryMessage(READ_SESSION_SQL), {
      ends: 'query', hidden: true,
      row: (frame) => {
        const fields = readDataRowTexts(frame);
        if (fields[0] === 's') settings.set(fields[1]!, fields[2]!);
        else statements.push(fields[1]!);
      },
      failed: () => this.socket.destroy(),
      done: (ok) => {
        if (!ok) return;
        this.settings = settings;
        this.settingsPrint = fingerprint(settings);
        this.statements.replaceWith(statements.filter((n) => n.startsWith(SERVER_STATEMENT_PREFIX)));
        if (statements.some((n) => !n.startsWith(SERVER_STATEMENT_PREFIX))) this.socket.destroy();
        done(settings);
      },
    });
  }

  /** Writes what was sent; false when the socket's buffer is full (wait for 'drain'). */
  flush(): boolean {
    if (this.out.length === 0 || this.closed) return true;
    const data = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out);
    this.out = [];
    return this.socket.write(data);
  }

  private pass(frame: Buffer): void {
    this.owner?.toClient(frame);
  }

  private drain(): void {
    while (this.slots[0]?.synthetic) {
      const slot = this.slots.shift()!;
      this.pass(slot.synthetic!());
      slot.done?.(true);
    }
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.splitter.split(chunk);
    } catch {
      this.socket.destroy();
      return;
    }
    for (const frame of frames) this.receive(frame);
    this.flush();
    this.owner?.backendIdle();
  }

  private receive(frame: Buffer): void {
    const type = frame[0]!;
    const head = this.slots[0];
    if (type === MSG.readyForQuery) {
      this.txStatus = frame[5]!;
      this.copyIn = false;
      if (head && (head.ends === 'sync' || head.ends === 'query')) {
        this.slots.shift();
        if (!head.hidden) this.pass(frame);
        head.done?.(true);
        this.drain();
      } else {
        this.pass(frame);
      }
      return;
    }
    if (type === MSG.error && endsSession(frame.subarray(5))) {
      // Whatever was waiting for an answer, this is the last message: its client gets it as it leaves.
      this.farewell = frame;
      return;
    }
    if (type === MSG.error) {
      this.copyIn = false;
      if (head && EXTENDED.has(head.ends)) {
        // The backend now skips to the next Sync: so do the answers expected before it.
        this.slots.shift();
        this.pass(frame);
        head.done?.(false);
        let skipped = 0;
        while (skipped < this.slots.length && this.slots[skipped]!.ends !== 'sync') skipped++;
        for (const slot of this.slots.splice(0, skipped)) slot.done?.(false);
        this.skipping = this.slots.length === 0;
        this.drain();
      } else if (head?.hidden) {
        head.failed?.(frame);
      } else {
        this.pass(frame);
      }
      return;
    }
    if (head && completes(type) === head.ends) {
      this.slots.shift();
      if (!head.hidden) this.pass(frame);
      head.done?.(true);
      this.drain();
      return;
    }
    if (type === MSG.copyIn) this.copyIn = true;
    if (head?.hidden) {
      if (type === MSG.dataRow) head.row?.(frame);
      return;
    }
    // A setting changed under the client (a function's SET, say): read them all back later.
    if (type === MSG.parameterStatus) this.resync = true;
    this.pass(frame);
  }

  /** Ends the connection politely (idle in the pool too long, pool shutting down). */
  close(): void {
    if (this.closed) return;
    this.socket.end(TERMINATE);
  }

  private gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.lease.release();
    for (const slot of this.slots.splice(0)) slot.done?.(false);
    this.onClosed?.();
    this.owner?.backendLost(this.farewell);
  }
}
