import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parse, serialize } from 'pg-protocol';
import type { Logger } from 'pino';
import { ADMIN_ROLE, SOCKET_PORT } from '../../pg/server.ts';
import { formatLsn } from '../point-in-time.ts';
import { SEGMENT_BYTES, type WalArchive, segmentName, segmentStart } from './wal-archive.ts';

/** The receiver's application_name: a durability "sync" compute names it in synchronous_standby_names. */
export const WAL_RECEIVER_NAME = 'pgfleet_wal';
export const REPLICATION_SLOT = 'pgfleet';

/** Reading stops while this much received WAL waits for the store (the compute keeps the rest, its slot holds it). */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
/** An async compute's parts are batched: one upload per this much WAL at most, or per flush delay. */
const BATCH_BYTES = 256 * 1024;
const RETRY_MS = [100, 250, 500, 1000, 2000];
/** Longest a keepalive that asks for an answer waits when the answer would say nothing new (well within wal_sender_timeout). */
const QUIET_ANSWER_MS = 1000;
// Microseconds between the Unix epoch and Postgres's (2000-01-01).
const PG_EPOCH_US = 946_684_800_000_000n;

export interface WalStreamerOptions {
  socketDir: string;
  pgdata: string;
  archive: WalArchive;
  historyId: string;
  tli: number;
  /** Where streaming starts (a segment boundary for a history with nothing stored yet). */
  start: bigint;
  /** Upload every byte at once (commits wait for it: a durability "sync" compute); may change while it runs. */
  sync: boolean;
  /** An async compute's WAL is in the store within this of being written. */
  maxLagMs: number;
  /** False once this node may no longer write (fenced, or its lease ran out): nothing more is uploaded. */
  canWrite: () => boolean;
  log: Logger;
}

/**
 * A WAL receiver in the gateway, one per running local compute, on Postgres's physical
 * replication protocol (as pg_receivewal): it takes the compute's WAL as it is flushed and puts it
 * in the store, then reports it flushed, which advances the compute's replication slot (its WAL is
 * kept until stored) and, for a durability "sync" compute, releases the commits waiting for it.
 *
 * Events: 'stored' (position): the store holds everything before it; 'error' (err) on a failed upload
 * round (retried); 'fenced'.
 */
export class WalStreamer extends EventEmitter {
  private socket: net.Socket | undefined;
  /** Received bytes not yet in the store, from `stored` on. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private received: bigint;
  private storedTo: bigint;
  private oldestPendingAt = 0;
  private uploading = false;
  /** When the upload in flight began (0: none). */
  private uploadSince = 0;
  private timer: NodeJS.Timeout | undefined;
  /** An answer to a keepalive, held back until an upload answers it or QUIET_ANSWER_MS pass. */
  private heldAnswer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The compute ended the stream: upload everything left, batch or not. */
  private draining = false;
  private compacting: Promise<void> = Promise.resolve();
  readonly finished: Promise<void>;
  private finish!: () => void;
  /** The last store failure, while uploads are failing. */
  failing: Error | undefined;
  private reports = 0;

  constructor(private readonly opts: WalStreamerOptions) {
    super();
    this.received = opts.start;
    this.storedTo = opts.start;
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  /** Standby status updates sent to the compute: one per upload, or per keepalive that no upload answered (a stop takes a few). */
  get statusReports(): number {
    return this.reports;
  }

  /** Everything before this position is in the store. */
  get stored(): bigint {
    return this.storedTo;
  }

  /** Commits wait for the store from now on (or no longer): every byte goes up at once. */
  setSync(sync: boolean): void {
    this.opts.sync = sync;
    if (sync) void this.upload();
  }

  /** How long the oldest WAL received and not yet stored has waited, in ms (0: none waits). */
  get lagMs(): number {
    return this.pendingBytes > 0 ? Date.now() - this.oldestPendingAt : 0;
  }

  /** WAL received from the compute and not yet stored, in bytes. */
  get backlog(): number {
    return this.pendingBytes;
  }

  /** Connects, checks the timeline, and starts streaming; resolves once the compute streams. */
  async start(): Promise<void> {
    const socket = net.connect(path.join(this.opts.socketDir, `.s.PGSQL.${SOCKET_PORT}`));
    this.socket = socket;
    const messages: any[] = [];
    let wake: (() => void) | undefined;
    let failure: Error | undefined;
    const next = async (): Promise<any> => {
      while (messages.length === 0) {
        if (failure) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
      }
      return messages.shift();
    };
    let streaming = false;
    void parse(socket, (msg: any) => {
      if (streaming && msg.name === 'copyData') return this.onCopyData(msg.chunk as Buffer);
      if (streaming) {
        if (msg.name === 'error') this.opts.log.warn({ err: msg.message }, 'the WAL stream ended with an error');
        return;
      }
      // CopyData may follow CopyBothResponse in the same read: from here on it is the stream's.
      if (msg.name === 'replicationStart') streaming = true;
      messages.push(msg);
      wake?.();
    });
    socket.on('error', (err) => {
      failure = err;
      wake?.();
    });
    socket.on('close', () => {
      failure ??= new Error('the compute closed the replication connection');
      wake?.();
      void this.end();
    });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.write(serialize.startup({ user: ADMIN_ROLE, database: 'replication', replication: 'true', application_name: WAL_RECEIVER_NAME }));
    const query = async (text: string): Promise<string[][]> => {
      socket.write(serialize.query(text));
      const rows: string[][] = [];
      let error: Error | undefined;
      for (;;) {
        const msg = await next();
        if (msg.name === 'dataRow') rows.push(msg.fields);
        else if (msg.name === 'error') error = new Error(`${text.split(' ')[0]}: ${msg.message}`);
        else if (msg.name === 'readyForQuery') break;
        else if (msg.name === 'replicationStart') return rows;
      }
      if (error) throw error;
      return rows;
    };
    for (;;) {
      const msg = await next();
      if (msg.name === 'error') throw new Error(`replication connection refused: ${msg.message}`);
      if (msg.name === 'readyForQuery') break;
    }
    const [system] = await query('IDENTIFY_SYSTEM');
    const tli = Number(system![1]);
    if (tli !== this.opts.tli) throw new Error(`the compute is on timeline ${tli}, its history ${this.opts.historyId} on ${this.opts.tli}`);
    // The slot keeps the compute's WAL until it is stored; a data directory brought from the store has none yet.
    if (!fs.existsSync(path.join(this.opts.pgdata, 'pg_replslot', REPLICATION_SLOT))) {
      await query(`CREATE_REPLICATION_SLOT ${REPLICATION_SLOT} PHYSICAL RESERVE_WAL`).catch((err: Error) => {
        if (!/already exists/.test(err.message)) throw err;
      });
    }
    if (tli > 1 && !(await this.opts.archive.historyFile(this.opts.historyId, tli))) {
      const [file] = await query(`TIMELINE_HISTORY ${tli}`);
      await this.opts.archive.putHistoryFile(this.opts.historyId, tli, Buffer.from(file![1]!, 'utf8'));
    }
    await query(`START_REPLICATION SLOT ${REPLICATION_SLOT} PHYSICAL ${formatLsn(this.opts.start)} TIMELINE ${tli}`);
    this.timer = setInterval(() => this.tick(), Math.max(50, Math.min(250, this.opts.maxLagMs / 4)));
    this.timer.unref();
  }

  private onCopyData(chunk: Buffer): void {
    if (chunk[0] === 0x77 /* w: XLogData */) {
      const dataStart = chunk.readBigUInt64BE(1);
      const data = Buffer.from(chunk.subarray(25));
      if (dataStart !== this.received) {
        this.opts.log.error({ expected: formatLsn(this.received), got: formatLsn(dataStart) }, 'the WAL stream skipped; reconnecting');
        this.socket?.destroy();
        return;
      }
      if (data.length === 0) return;
      if (this.pendingBytes === 0) this.oldestPendingAt = Date.now();
      this.pending.push(data);
      this.pendingBytes += data.length;
      this.received += BigInt(data.length);
      if (this.pendingBytes >= MAX_PENDING_BYTES) this.socket?.pause();
      if (this.opts.sync || this.pendingBytes >= BATCH_BYTES) void this.upload();
    } else if (chunk[0] === 0x6b /* k: keepalive */ && chunk[17] === 1) {
      this.answerKeepalive();
    }
  }

  /**
   * A stopping compute asks again the moment it hears back, until the store holds all it sent: an
   * answer with nothing new would make its stop a busy loop of round trips (thousands per stop). So
   * what waits is uploaded now and the answer goes with the upload (every upload reports); without
   * one, it is held back a while.
   */
  private answerKeepalive(): void {
    if (this.pendingBytes > 0) void this.upload();
    this.heldAnswer ??= setTimeout(() => this.sendStatus(), QUIET_ANSWER_MS).unref();
  }

  /** Uploads a batch that has waited long enough (async computes), and keeps the compute informed. */
  private tick(): void {
    if (this.pendingBytes > 0 && Date.now() - this.oldestPendingAt >= this.opts.maxLagMs / 4) void this.upload();
  }

  private sendStatus(): void {
    clearTimeout(this.heldAnswer);
    this.heldAnswer = undefined;
    if (!this.socket?.writable) return;
    this.reports++;
    const status = Buffer.alloc(34);
    status[0] = 0x72; // r: standby status update
    status.writeBigUInt64BE(this.received, 1);
    status.writeBigUInt64BE(this.storedTo, 9);
    status.writeBigUInt64BE(this.storedTo, 17);
    status.writeBigUInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_US, 25);
    this.socket.write(serialize.copyData(status));
  }

  /** The pending bytes up to the end of the segment they start in (only the buffers needed are copied). */
  private takeBatch(): Buffer {
    const room = Number(segmentStart(this.storedTo) + BigInt(SEGMENT_BYTES) - this.storedTo);
    const pieces: Buffer[] = [];
    let size = 0;
    for (const b of this.pending) {
      if (size >= room) break;
      const piece = b.subarray(0, Math.min(b.length, room - size));
      pieces.push(piece);
      size += piece.length;
    }
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, size);
  }

  /** Forgets the first `n` pending bytes (stored); what arrived meanwhile stays. */
  private dropPending(n: number): void {
    this.pendingBytes -= n;
    while (n > 0) {
      const head = this.pending[0]!;
      if (head.length <= n) {
        this.pending.shift();
        n -= head.length;
      } else {
        this.pending[0] = head.subarray(n);
        n = 0;
      }
    }
  }

  /** One upload at a time, in order; a failed one is retried (the bytes stay pending) until the store takes it. */
  private async upload(): Promise<void> {
    if (this.uploading) return;
    this.uploading = true;
    try {
      for (let attempt = 0; this.pendingBytes > 0; ) {
        if (!this.opts.canWrite()) {
          this.emit('fenced');
          this.closed = true;
          this.socket?.destroy();
          return;
        }
        const batch = this.takeBatch();
        this.uploadSince = Date.now();
        try {
          await this.opts.archive.putPart(this.opts.historyId, this.opts.tli, this.storedTo, batch);
        } catch (err) {
          this.failing = err as Error;
          this.emit('error', err);
          await new Promise((r) => setTimeout(r, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]));
          continue;
        }
        attempt = 0;
        this.failing = undefined;
        this.dropPending(batch.length);
        this.oldestPendingAt = Date.now();
        const segment = segmentStart(this.storedTo);
        this.storedTo += BigInt(batch.length);
        if (this.storedTo === segment + BigInt(SEGMENT_BYTES)) this.compact(segment);
        this.sendStatus();
        this.emit('stored', this.storedTo);
        if (this.pendingBytes < MAX_PENDING_BYTES / 4) this.socket?.resume();
        if (!this.opts.sync && !this.draining && this.pendingBytes < BATCH_BYTES) break; // the rest waits for its batch
      }
    } finally {
      this.uploading = false;
      this.uploadSince = 0;
    }
  }

  /** How long the upload in flight has taken, in ms (0: none is in flight): a store that hangs shows here before it fails. */
  get uploadingMs(): number {
    return this.uploadSince === 0 ? 0 : Date.now() - this.uploadSince;
  }

  /**
   * A full segment becomes one object, read from the compute's pg_wal (its slot keeps the file
   * until reported stored), and its parts go; a segment that cannot be read stays in parts.
   */
  private compact(segment: bigint): void {
    const name = segmentName(this.opts.tli, segment);
    this.compacting = this.compacting.then(async () => {
      const file = await fs.promises.readFile(path.join(this.opts.pgdata, 'pg_wal', name)).catch(() => undefined);
      if (file?.length !== SEGMENT_BYTES || !this.opts.canWrite()) return;
      await this.opts.archive.putSegment(this.opts.historyId, name, file);
      await this.opts.archive.dropParts(this.opts.historyId, name);
    }).catch((err) => this.opts.log.warn({ segment: name, err: String(err) }, 'a full WAL segment stays in parts'));
  }

  /** The compute closed the stream (it stopped): what it sent reaches the store, then `finished`. */
  private async end(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.heldAnswer);
    this.draining = true;
    while (this.pendingBytes > 0 && !this.closed) {
      await this.upload();
      if (this.pendingBytes > 0) await new Promise((r) => setTimeout(r, 100));
    }
    this.closed = true;
    await this.compacting;
    this.finish();
  }

  /** Stops streaming now, uploading nothing more (the node was fenced, or the compute is gone). */
  abort(): void {
    this.closed = true;
    this.socket?.destroy();
  }
}
