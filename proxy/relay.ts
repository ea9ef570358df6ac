import type { Duplex } from 'node:stream';
import { errorResponse } from './messages.ts';
import type { Session } from './session.ts';

/** How a relayed session ended. */
export type RelayOutcome = 'client closed' | 'compute closed';

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

/**
 * Relays raw bytes both ways until either side goes. Client gone → the compute's socket is
 * closed (its backend process ends). Compute gone without the client asking → the client
 * gets an ErrorResponse, then a close.
 */
export function relay(client: Duplex, backend: Duplex, session: Session): Promise<RelayOutcome> {
  return new Promise((resolve) => {
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
    pump(backend, client, (n) => {
      session.bytesToClient += n;
    });
    const clientGone = () => {
      backend.destroy();
      finish('client closed');
    };
    const computeGone = () => {
      if (!done && !clientTerminated && client.writable) {
        client.end(errorResponse({ sqlstate: '08006', message: 'the connection to the database was lost' }));
      } else {
        client.end();
      }
      finish(clientTerminated ? 'client closed' : 'compute closed');
    };
    // Either side may have gone while the compute was being woken.
    if (client.destroyed || backend.destroyed) {
      client.destroy();
      backend.destroy();
      finish(client.destroyed ? 'client closed' : 'compute closed');
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
