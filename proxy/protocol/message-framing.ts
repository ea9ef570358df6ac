/**
 * Follows the message framing of a relayed protocol stream (type byte, Int32 length, body)
 * without copying it: where messages end, and the few facts the proxy acts on. The compute's
 * side: did it say why it ended (a FATAL or PANIC ErrorResponse last), how many ReadyForQuery it
 * sent and the last transaction status, and the ParameterStatus values it reported. The client's
 * side: how many ReadyForQuery its messages will get, whether extended-protocol messages wait for
 * a Sync, and whether its last message was Terminate. Together they tell a backend left idle,
 * with everything its client asked answered, from one in the middle of something.
 */
import { ERROR_FIELD, MSG, TX_IDLE } from './codes.ts';
import type { ServerParameters } from './server-parameters.ts';

const HEADER = 5; // type byte + Int32 length

/**
 * Message framing of one direction; `keep(type)` says whose bodies onMessage gets. The two
 * streams extend it rather than hold one with callbacks: an idle session holds two objects, no closures.
 */
abstract class MessageFraming {
  /** A header split across chunks, gathered (made the first time one is: a session holds nothing it does not need). */
  private header: Buffer | undefined;
  private headerHave = 0;
  private type = 0;
  private bodyLeft = 0;
  private body: Buffer[] | undefined;

  protected abstract keep(type: number): boolean;
  protected abstract onMessage(type: number, body: Buffer | undefined): void;

  /** Between two messages: a message of the proxy's own would be read as one. */
  get atBoundary(): boolean {
    return this.headerHave === 0;
  }

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.headerHave === 0 && chunk.length - at >= HEADER) {
        // The common case: the whole header is in this chunk.
        this.begin(chunk[at]!, chunk.readUInt32BE(at + 1));
        at += HEADER;
      } else if (this.headerHave < HEADER) {
        const n = Math.min(HEADER - this.headerHave, chunk.length - at);
        this.header ??= Buffer.allocUnsafe(HEADER);
        chunk.copy(this.header, this.headerHave, at, at + n);
        this.headerHave += n;
        at += n;
        if (this.headerHave < HEADER) return;
        this.begin(this.header[0]!, this.header.readUInt32BE(1));
      }
      const n = Math.min(this.bodyLeft, chunk.length - at);
      if (n > 0) this.body?.push(chunk.subarray(at, at + n));
      this.bodyLeft -= n;
      at += n;
      if (this.bodyLeft === 0) this.complete();
    }
  }

  private begin(type: number, length: number): void {
    this.headerHave = HEADER;
    this.type = type;
    this.bodyLeft = Math.max(0, length - 4);
    this.body = this.keep(type) ? [] : undefined;
  }

  private complete(): void {
    const body = this.body && (this.body.length === 1 ? this.body[0]! : Buffer.concat(this.body));
    this.body = undefined;
    this.headerHave = 0;
    this.onMessage(this.type, body);
  }
}


/** The compute's side of a session. */
export class ComputeStream extends MessageFraming {
  /** The last whole message was an ErrorResponse of severity FATAL or PANIC. */
  saidWhy = false;
  /** ReadyForQuery messages seen, and the transaction status of the last. */
  ready = 0;
  status = TX_IDLE;

  /** `parameters` is kept up to date with the ParameterStatus the compute sends. */
  constructor(private readonly parameters?: ServerParameters) {
    super();
  }

  protected keep(type: number): boolean {
    return type === MSG.error || type === MSG.readyForQuery || (type === MSG.parameterStatus && this.parameters !== undefined);
  }

  protected onMessage(type: number, body: Buffer | undefined): void {
    this.saidWhy = type === MSG.error && endsSession(body!);
    if (type === MSG.readyForQuery) {
      this.ready++;
      this.status = body![0] ?? 0;
    } else if (type === MSG.parameterStatus && this.parameters) {
      const end = body!.indexOf(0);
      if (end >= 0) this.parameters.set(body!.toString('utf8', 0, end), body!.toString('utf8', end + 1, Math.max(end + 1, body!.length - 1)));
    }
  }
}

/** Parse, Bind, Describe, Execute, Close, Flush: answered up to the next Sync. */
const EXTENDED = new Set<number>([MSG.parse, MSG.bind, MSG.describe, MSG.execute, MSG.close, MSG.flush]);

/** The client's side of a session. */
export class ClientStream extends MessageFraming {
  /** ReadyForQuery messages the client's messages so far will get (one per Query, Sync, FunctionCall). */
  awaited = 0;
  /** Extended-protocol messages were sent since the last Sync. */
  unsynced = false;
  /** The last whole message was Terminate. */
  terminated = false;

  protected keep(): boolean {
    return false;
  }

  protected onMessage(type: number): void {
    this.terminated = type === MSG.terminate;
    if (type === MSG.query || type === MSG.sync || type === MSG.functionCall) this.awaited++;
    if (type === MSG.sync) this.unsynced = false;
    else if (EXTENDED.has(type)) this.unsynced = true;
  }
}

/**
 * The client said goodbye with the backend idle: everything it asked was answered, no transaction
 * is open, and neither stream stands in the middle of a message.
 */
export function leftIdle(client: ClientStream, compute: ComputeStream): boolean {
  return client.terminated && client.atBoundary && !client.unsynced && compute.atBoundary &&
    compute.ready === client.awaited && compute.status === TX_IDLE;
}

/** Whether an ErrorResponse body is of severity FATAL or PANIC: its sender ends the session. */
export const endsSession = (body: Buffer) => /^(FATAL|PANIC)$/.test(severity(body));

/** The S (or V) field of an ErrorResponse body: fields of a type byte and a C string, then a 0. */
function severity(body: Buffer): string {
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    if (body[at] === ERROR_FIELD.severity || body[at] === ERROR_FIELD.severityV) return body.toString('utf8', at + 1, end);
    at = end + 1;
  }
  return '';
}
