import type { Duplex } from 'node:stream';
import { ClientLeft, ProtocolViolation, Unanswered } from '../errors.ts';

/** Postgres's own limit for a startup packet. */
export const MAX_STARTUP_PACKET = 10_000;
/** Handshake messages are small: SCRAM, a password (a JWT fits too), ParameterStatus. */
export const MAX_AUTH_MESSAGE = 10_000;
/** Past this, stop reading from the socket until the handshake takes what it needs. */
const HIGH_WATER = 64 * 1024;
/** No bytes (shared: a reader, detached or never fed, holds no buffer of its own). */
const EMPTY = Buffer.alloc(0);

/**
 * Reads the handshake's packets from a socket: untyped length-prefixed startup packets, then
 * typed messages. Buffered bytes are bounded; a length out of range is a protocol violation.
 * detach() hands what the client already sent after the handshake to the relay.
 */
export class PacketReader {
  private buf: Buffer = EMPTY;
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(private readonly socket: Duplex) {
    socket.on('data', this.onData);
    socket.on('end', this.onClose);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > HIGH_WATER) this.socket.pause();
    this.notify();
  };

  private readonly onClose = () => {
    this.closed = true;
    this.notify();
  };

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async need(n: number): Promise<void> {
    while (this.buf.length < n) {
      if (this.closed) throw new ClientLeft(this.buf.length === 0 ? undefined : 'the client closed the connection in the middle of a message');
      if (this.socket.isPaused()) this.socket.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** The next byte, left unread (undefined when the client closed first). */
  async peek(): Promise<number | undefined> {
    if (this.buf.length === 0 && !this.closed) await this.need(1).catch(() => undefined);
    return this.buf[0];
  }

  /** A startup-phase packet without its length word: the 4-byte code, then the payload. */
  async readStartup(): Promise<Buffer> {
    await this.need(4);
    const length = this.buf.readUInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_PACKET) throw new Unanswered(`invalid length of startup packet: ${length}`);
    await this.need(length);
    return this.take(length).subarray(4);
  }

  /** A typed message's whole frame: type byte, length, body. */
  async readFrame(what: string): Promise<Buffer> {
    await this.need(5);
    const length = this.buf.readUInt32BE(1);
    if (length < 4 || length > MAX_AUTH_MESSAGE) throw new ProtocolViolation(`invalid ${what} length: ${length}`);
    await this.need(length + 1);
    return this.take(length + 1);
  }

  /** The body of a typed message; only type `expected` is accepted here. */
  async readMessage(expected: number, what: string): Promise<Buffer> {
    await this.need(1);
    if (this.buf[0] !== expected) throw new ProtocolViolation(`expected ${what}, got message type 0x${this.buf[0]!.toString(16)}`);
    return (await this.readFrame(what)).subarray(5);
  }

  /** Bytes received but not yet read. */
  get pending(): number {
    return this.buf.length;
  }

  /** Whether the client has closed its side. */
  get ended(): boolean {
    return this.closed;
  }

  /** Stops reading; returns what the client sent beyond the handshake. */
  detach(): Buffer {
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onClose);
    this.socket.off('close', this.onClose);
    const rest = this.buf;
    this.buf = EMPTY;
    return rest;
  }
}
