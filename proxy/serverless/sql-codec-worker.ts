/** The worker thread of sql-codec-pool.ts: runs sql-codec.ts on big requests and answers, off the event loop. */
import { parentPort } from 'node:worker_threads';
import { PgfleetError } from '../../src/errors.ts';
import { type CodecCall, type CodecReply, run } from './sql-codec-pool.ts';

parentPort!.on('message', (call: CodecCall) => {
  let reply: CodecReply;
  try {
    reply = { id: call.id, ok: true, result: run(call) };
  } catch (err) {
    const e = err as PgfleetError;
    reply = { id: call.id, ok: false, error: { message: e.message, httpStatus: e.httpStatus ?? 500, sqlstate: e.sqlstate ?? 'XX000' } };
  }
  const bytes = reply.ok ? (reply.result instanceof Uint8Array ? reply.result : reply.result.wire) : undefined;
  parentPort!.postMessage(reply, bytes ? [bytes.buffer as ArrayBuffer] : []);
});
