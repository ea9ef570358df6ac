/**
 * Where sql-codec.ts runs: inline for what is small (no thread hop for the common query), in one
 * worker thread for what is big (a body or an answer of megabytes would otherwise hold the event
 * loop, and every other tenant's session with it, for as long as it takes).
 */
import { Worker } from 'node:worker_threads';
import { HttpError } from './http-error.ts';
import { type DecodeOptions, type EncodeOptions, type EncodedRequest, decodeAnswer, encodeRequest } from './sql-codec.ts';

/** Up to this many bytes, the work takes well under a millisecond: inline. */
const INLINE_BYTES = 64 * 1024;

export type CodecCall =
  | { id: number; op: 'encode'; body: Uint8Array; opts: EncodeOptions }
  | { id: number; op: 'decode'; raw: Uint8Array; request: Omit<EncodedRequest, 'wire'>; opts: DecodeOptions };

export type CodecReply =
  | { id: number; ok: true; result: EncodedRequest | Uint8Array }
  | { id: number; ok: false; error: { message: string; httpStatus: number; sqlstate: string } };

/** A call's result, its bytes in an ArrayBuffer of their own (moved, not copied, to the other thread). */
export function run(call: CodecCall): EncodedRequest | Uint8Array {
  if (call.op === 'decode') return movable(decodeAnswer(call.raw, call.request, call.opts));
  const encoded = encodeRequest(call.body, call.opts);
  return { ...encoded, wire: movable(encoded.wire) as Buffer };
}

/** A Buffer's bytes as their own ArrayBuffer (small Buffers share Node's pool, which cannot move). */
function movable(buf: Buffer): Uint8Array {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) return buf;
  return new Uint8Array(buf);
}

export class SqlCodecPool {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (r: EncodedRequest | Buffer) => void; reject: (err: Error) => void }>();
  private nextId = 0;

  async encode(body: Buffer, opts: EncodeOptions): Promise<EncodedRequest> {
    if (body.length <= INLINE_BYTES) return encodeRequest(body, opts);
    const out = (await this.call({ id: 0, op: 'encode', body: movable(body), opts })) as EncodedRequest;
    return { ...out, wire: Buffer.from(out.wire.buffer, out.wire.byteOffset, out.wire.byteLength) };
  }

  async decode(raw: Buffer, request: EncodedRequest, opts: DecodeOptions): Promise<Buffer> {
    const meta = { kind: request.kind, arrayModes: request.arrayModes };
    if (raw.length <= INLINE_BYTES) return decodeAnswer(raw, meta, opts);
    const out = (await this.call({ id: 0, op: 'decode', raw: movable(raw), request: meta, opts })) as Uint8Array;
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }

  private call(call: CodecCall): Promise<EncodedRequest | Buffer> {
    const worker = this.worker ??= this.start();
    const id = ++this.nextId;
    const bytes = call.op === 'encode' ? call.body : call.raw;
    // The worker keeps the process alive only while it has work.
    if (this.pending.size === 0) worker.ref();
    return new Promise<EncodedRequest | Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...call, id }, [bytes.buffer as ArrayBuffer]);
    }).finally(() => {
      if (this.pending.size === 0) worker.unref();
    });
  }

  private start(): Worker {
    const worker = new Worker(new URL('./sql-codec-worker.mjs', import.meta.url));
    worker.unref();
    worker.on('message', (reply: CodecReply) => {
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.result as EncodedRequest | Buffer);
      else waiter?.reject(new HttpError(reply.error.httpStatus, reply.error.message, reply.error.sqlstate));
    });
    // A worker that dies takes its calls with it; the next call starts another.
    const lost = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
    };
    worker.on('error', lost);
    worker.on('exit', () => lost(new Error('the SQL codec worker exited')));
    return worker;
  }

  close(): void {
    void this.worker?.terminate();
    this.worker = undefined;
  }
}
