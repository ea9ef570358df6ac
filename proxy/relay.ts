import type { Duplex } from 'node:stream';
import { ComputeEnding } from './compute-ending.ts';
import { errorResponse } from './messages.ts';
import type { Session } from './session.ts';

/** How a relayed session ended. */
export type RelayOutcome = 'client_closed' | 'compute_closed';

// Frontend Terminate: the client said goodbye, so the compute closing next is no surprise.
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);
const endsWithTerminate = (chunk: Buffer) =>
  chunk.length >= 5 && chunk.compare(TERMINATE, 0, 5, chunk.length - 5) === 0;

/** Forwards chunks from `from` to `to` with backpressure, counting them on the way. */
function pump(from: Duplex, to: Duplex, count: (n: number, chunk: Buffer) => void): void {
  from.on('data', (chunk: Buffer) => {
    count(chunk.length, chunk);
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
  from.resume();
}

/** What pgfleet says when the compute vanished without a word (it crashed or was killed). */
const COMPUTE_VANISHED = errorResponse({
  sqlstate: '57P02',
  message: 'terminating connection because the compute stopped unexpectedly',
  hint: 'In a moment you should be able to reconnect to the database and repeat your command.',
});

/**
 * Relays raw bytes both ways until either side goes. Client gone → the compute's socket is
 * closed (its backend process ends). Compute gone → the client gets everything it sent, in
 * order, then a close; only when the compute vanished without a FATAL of its own (a crash)
 * does pgfleet add one, between two messages as a server would. `fromCompute` is what the
 * compute already sent after its startup.
 */
export function relay(client: Duplex, backend: Duplex, session: Session, fromCompute: Buffer = Buffer.alloc(0)): Promise<RelayOutcome> {
  return new Promise((resolve) => {
    const ending = new ComputeEnding();
    let clientTerminated = false;
    let done = false;
    const finish = (outcome: RelayOutcome) => {
      if (done) return;
      done = true;
      resolve(outcome);
    };
    pump(client, backend, (n, chunk) => {
      session.bytesFromClient += n;
      clientTerminated = endsWithTerminate(chunk);
    });
    const fromBackend = (n: number, chunk: Buffer) => {
      session.bytesToClient += n;
      ending.feed(chunk);
    };
    if (fromCompute.length > 0) {
      fromBackend(fromCompute.length, fromCompute);
      client.write(fromCompute);
    }
    pump(backend, client, fromBackend);
    const clientGone = () => {
      backend.destroy();
      finish('client_closed');
    };
    const computeGone = () => {
      const vanished = !done && !clientTerminated && !ending.saidWhy && ending.atBoundary;
      if (vanished && client.writable) client.end(COMPUTE_VANISHED);
      else client.end();
      finish(clientTerminated ? 'client_closed' : 'compute_closed');
    };
    // Either side may have gone while the compute was being woken.
    if (client.destroyed || backend.destroyed) {
      client.destroy();
      backend.destroy();
      finish(client.destroyed ? 'client_closed' : 'compute_closed');
      return;
    }
    client.on('end', clientGone);
    client.on('close', clientGone);
    client.on('error', clientGone);
    backend.on('end', computeGone);
    backend.on('close', computeGone);
    backend.on('error', computeGone);
  });
}
