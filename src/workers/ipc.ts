/**
 * Calls and notes between the primary and its proxy workers over the cluster's IPC channel
 * (process.send / worker.send). Messages carry `pgfleet` so that others on the channel (cluster's
 * own) pass by. An error crosses as its message, SQLSTATE, HTTP status and code, and comes back
 * out as a PgfleetError with the same words, so the client hears what the primary said.
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
type WireError = { message: string; sqlstate?: string; httpStatus?: number; code?: string };

export class IpcPeer {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly handlers = new Map<string, (args: any) => unknown>();
  private readonly notes = new Map<string, (args: any) => void>();
  private closed = false;

  /** `id`: the worker's gateway id (in the primary, the worker it talks to). */
  constructor(private readonly channel: IpcChannel, public id: string) {
    channel.on('message', (m) => this.receive(m as Call | Answer | Note));
  }

  call<T = unknown>(op: string, args?: unknown): Promise<T> {
    if (this.closed) return Promise.reject(new PgfleetError('the gateway process is restarting', '57P03', 503, 'worker_gone'));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.channel.send({ pgfleet: 'call', id, op, args } satisfies Call);
    });
  }

  notify(op: string, args?: unknown): void {
    if (!this.closed) this.channel.send({ pgfleet: 'note', op, args } satisfies Note);
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

  private receive(m: Call | Answer | Note): void {
    if (typeof m !== 'object' || m === null) return;
    if (m.pgfleet === 'answer') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(toError(m.error));
      else p?.resolve(m.value);
    } else if (m.pgfleet === 'call') {
      const fn = this.handlers.get(m.op);
      const answer = (a: Omit<Answer, 'pgfleet' | 'id'>) => {
        if (!this.closed) this.channel.send({ pgfleet: 'answer', id: m.id, ...a });
      };
      if (!fn) return void answer({ error: { message: `no such call: ${m.op}` } });
      Promise.resolve().then(() => fn(m.args)).then((value) => answer({ value }), (err) => answer({ error: fromError(err) }));
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
