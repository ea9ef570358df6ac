import { ProtocolViolation } from '../errors.ts';

/**
 * Splits a byte stream into whole protocol messages (type byte, Int32 length, body). Whole
 * messages inside a chunk are handed out as views of it; only a message cut across chunks is
 * copied. Nothing is kept between messages, so an idle connection holds no buffer.
 */
export class FrameSplitter {
  /** Chunks of a message cut across reads, and their total length. */
  private parts: Buffer[] | undefined;
  private partLength = 0;
  /** Length of the cut message once its header is known (0 = not yet). */
  private needed = 0;

  constructor(private readonly maxLength: number) {}

  split(chunk: Buffer): Buffer[] {
    let buf = chunk;
    if (this.parts) {
      this.parts.push(chunk);
      this.partLength += chunk.length;
      if (this.needed === 0 && this.partLength >= 5) this.needed = this.frameLength(Buffer.concat(this.parts), 0);
      // A large message arriving in many reads is joined once, when it is complete.
      if (this.needed === 0 || this.partLength < this.needed) return [];
      buf = Buffer.concat(this.parts, this.partLength);
      this.parts = undefined;
      this.partLength = 0;
      this.needed = 0;
    }
    const frames: Buffer[] = [];
    let at = 0;
    while (buf.length - at >= 5) {
      const length = this.frameLength(buf, at);
      if (buf.length - at < length) break;
      frames.push(buf.subarray(at, at + length));
      at += length;
    }
    if (at < buf.length) {
      const tail = buf.subarray(at);
      // A view would pin the whole chunk; copy a small tail.
      this.parts = [tail.length < 4096 ? Buffer.from(tail) : tail];
      this.partLength = tail.length;
      this.needed = tail.length >= 5 ? this.frameLength(tail, 0) : 0;
    }
    return frames;
  }

  /** The whole length (type byte included) of the message whose header is at `at`. */
  private frameLength(buf: Buffer, at: number): number {
    const length = buf.readUInt32BE(at + 1);
    if (length < 4 || length > this.maxLength) throw new ProtocolViolation(`invalid message length: ${length}`);
    return length + 1;
  }

  /** Bytes of a message not yet complete. */
  get pending(): number {
    return this.partLength;
  }
}

/** The NUL-terminated string at `at` in a message frame, and where the next field starts. */
export function readCString(frame: Buffer, at: number): { value: string; next: number } {
  const end = frame.indexOf(0, at);
  if (end < 0) throw new ProtocolViolation('malformed message: unterminated string');
  return { value: frame.toString('utf8', at, end), next: end + 1 };
}
