/**
 * Calls and notes between the primary and its proxy workers over the cluster's IPC channel
 * (process.send / worker.send). Messages carry `pgfleet` so that others on the channel (cluster's
 * own) pass by. An error crosses as its message, SQLSTATE, HTTP status and code, and comes back
 * out as a PgfleetError with the same words, so the client hears what the primary said.
 *
 * What one side sends in the same turn of its event loop crosses as one message (a batch): a
 * session's start and end each send several calls and notes at once, and every message costs both
 * processes a pipe write or read and a dispatch. Order is kept, within a batch and across them.
 */
import { PgfleetError } from '../errors.ts';

/** The two ends of the channel: a cluster Worker in the primary, `process` in a worker. */
export interface IpcChannel {
  send(message: unknown): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
}

type Call = { pgfleet: 'call'; id: number; op: string; args: unknown };
type Answer = { pgfleet: 'answer'; id: number; value?: unknown; error?: WireError };
type Note = { pgfleet: 'note'; op: string; args: unknown };
type Batch = { pgfleet: 'batch'; messages: Message[] };
type Message = Call | Answer | Note;
type WireError = { message: string; sqlstate?: string; httpStatus?: number; code?: string };

export class IpcPeer {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly handlers = new Map<string, (args: any) => unknown>();
  private readonly notes = new Map<string, (args: any) => void>();
  private closed = false;
  /** Messages of this turn, sent together at its end. */
  private outbox: Message[] = [];

  /** `id`: the worker's gateway id (in the primary, the worker it talks to). */
  constructor(private readonly channel: IpcChannel, public id: string) {
    channel.on('message', (m) => this.receive(m as Message | Batch));
  }

  call<T = unknown>(op: string, args?: unknown): Promise<T> {
    if (this.closed) return Promise.reject(new PgfleetError('the gateway process is restarting', '57P03', 503, 'worker_gone'));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.post({ pgfleet: 'call', id, op, args });
    });
  }

  notify(op: string, args?: unknown): void {
    this.post({ pgfleet: 'note', op, args });
  }

  handle(op: string, fn: (args: any) => unknown): void {
    this.handlers.set(op, fn);
  }

  onNote(op: string, fn: (args: any) => void): void {
    this.notes.set(op, fn);
  }

  /** The other end is gone: every call waiting on it fails. */
  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new PgfleetError('the gateway process is restarting', '57P03', 503, 'worker_gone'));
    this.pending.clear();
  }

  /** Nothing is sent once the peer is closed. */
  private post(m: Message): void {
    if (!this.closed && this.outbox.push(m) === 1) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    const messages = this.outbox;
    this.outbox = [];
    if (this.closed) return;
    try {
      this.channel.send(messages.length === 1 ? messages[0] : ({ pgfleet: 'batch', messages } satisfies Batch));
    } catch {
      // A channel that cannot take a message is gone: its calls fail as when the other end dies.
      this.close();
    }
  }

  private receive(m: Message | Batch): void {
    if (typeof m !== 'object' || m === null) return;
    if (m.pgfleet === 'batch') {
      for (const each of m.messages) this.receive(each);
    } else if (m.pgfleet === 'answer') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(toError(m.error));
      else p?.resolve(m.value);
    } else if (m.pgfleet === 'call') {
      const fn = this.handlers.get(m.op);
      const answer = (a: Omit<Answer, 'pgfleet' | 'id'>) => this.post({ pgfleet: 'answer', id: m.id, ...a });
      if (!fn) return void answer({ error: { message: `no such call: ${m.op}` } });
      // Run now, not on a later microtask: a note sent after this call must find it applied.
      let result: unknown;
      try {
        result = fn(m.args);
      } catch (err) {
        return void answer({ error: fromError(err) });
      }
      Promise.resolve(result).then((value) => answer({ value }), (err) => answer({ error: fromError(err) }));
    } else if (m.pgfleet === 'note') {
      this.notes.get(m.op)?.(m.args);
    }
  }
}

function fromError(err: unknown): WireError {
  if (err instanceof PgfleetError) return { message: err.message, sqlstate: err.sqlstate, httpStatus: err.httpStatus, code: err.code };
  return { message: err instanceof Error ? err.message : String(err) };
}

function toError(e: WireError): Error {
  return e.sqlstate ? new PgfleetError(e.message, e.sqlstate, e.httpStatus ?? 503, e.code ?? 'internal') : new Error(e.message);
}
