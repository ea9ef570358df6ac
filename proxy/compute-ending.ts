/**
 * Follows the message framing of the compute's byte stream as it is relayed, without copying
 * it, to tell how a session ended: did the compute say why (a FATAL or PANIC ErrorResponse as
 * its last message) and may a message of pgfleet's own still be added (the stream stands
 * between two messages)?
 */
const ERROR_RESPONSE = 0x45; // 'E'
const HEADER = 5; // type byte + Int32 length

export class ComputeEnding {
  private readonly header = Buffer.alloc(HEADER);
  private headerHave = 0;
  private bodyLeft = 0;
  private errorBody: Buffer[] | undefined;
  /** The last whole message was an ErrorResponse of severity FATAL or PANIC. */
  saidWhy = false;

  /** Between two messages: a message of pgfleet's own would be read as one. */
  get atBoundary(): boolean {
    return this.headerHave === 0;
  }

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.headerHave < HEADER) {
        const n = Math.min(HEADER - this.headerHave, chunk.length - at);
        chunk.copy(this.header, this.headerHave, at, at + n);
        this.headerHave += n;
        at += n;
        if (this.headerHave < HEADER) return;
        this.bodyLeft = Math.max(0, this.header.readUInt32BE(1) - 4);
        // Only ErrorResponse bodies are kept (they are small), to read their severity.
        this.errorBody = this.header[0] === ERROR_RESPONSE ? [] : undefined;
      } else {
        const n = Math.min(this.bodyLeft, chunk.length - at);
        this.errorBody?.push(chunk.subarray(at, at + n));
        this.bodyLeft -= n;
        at += n;
      }
      if (this.bodyLeft === 0) this.complete();
    }
  }

  private complete(): void {
    this.saidWhy = this.errorBody !== undefined && /^(FATAL|PANIC)$/.test(severity(Buffer.concat(this.errorBody)));
    this.errorBody = undefined;
    this.headerHave = 0;
  }
}

/** The S (or V) field of an ErrorResponse body: fields of a type byte and a C string, then a 0. */
function severity(body: Buffer): string {
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    if (body[at] === 0x53 /* S */ || body[at] === 0x56 /* V */) return body.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return '';
}
