import type { Duplex } from 'node:stream';
import { ClientStream, ComputeStream, leftIdle } from './protocol/message-framing.ts';
import { TERMINATE, errorResponse } from './protocol/messages.ts';
import type { Session } from './session.ts';

/** How a relayed session ended. */
export type RelayOutcome = 'client_closed' | 'compute_closed';

export interface RelayEnd {
  outcome: RelayOutcome;
  /**
   * The client said goodbye (Terminate, not passed on) with its backend idle: the compute's
   * socket is left open, paused and without the relay's listeners, for the caller to keep or close.
   */
  idle: boolean;
}

export interface RelayOptions {
  /** What the client already sent after its startup (passed on first). */
  fromClient?: Buffer;
  /** What the compute already sent after its startup. */
  fromCompute?: Buffer;
  /** Kept up to date with the ParameterStatus the compute sends. */
  parameters?: Map<string, string>;
  /** A backend the client leaves idle is handed back (RelayEnd.idle) rather than closed. */
  keepIdle?: boolean;
}

// Frontend Terminate, alone in a chunk: the way clients say goodbye.

/** What pgfleet says when the compute vanished without a word (it crashed or was killed). */
const COMPUTE_VANISHED = errorResponse({
  sqlstate: '57P02',
  message: 'terminating connection because the compute stopped unexpectedly',
  hint: 'In a moment you should be able to reconnect to the database and repeat your command.',
});

/**
 * Relays raw bytes both ways until either side goes. Client gone → the compute's socket is
 * closed (its backend process ends), unless the client left it idle and keepIdle asks for it.
 * Compute gone → the client gets everything it sent, in order, then a close; only when the
 * compute vanished without a FATAL of its own (a crash) does pgfleet add one, between two
 * messages as a server would.
 */
export function relay(client: Duplex, backend: Duplex, session: Session, opts: RelayOptions = {}): Promise<RelayEnd> {
  return new Promise((resolve) => {
    const compute = new ComputeStream(opts.parameters);
    const asked = new ClientStream();
    const listeners: [Duplex, string, (...args: any[]) => void][] = [];
    const on = (stream: Duplex, event: string, fn: (...args: any[]) => void) => {
      stream.on(event, fn);
      listeners.push([stream, event, fn]);
    };
    let done = false;
    const finish = (outcome: RelayOutcome, idle = false) => {
      if (done) return;
      done = true;
      for (const [stream, event, fn] of listeners) stream.off(event, fn);
      resolve({ outcome, idle });
    };
    /** Writes with backpressure: `from` waits while `to` drains. */
    const waiting = new Set<Duplex>();
    const forward = (from: Duplex, to: Duplex, chunk: Buffer) => {
      if (to.write(chunk) || waiting.has(from)) return;
      waiting.add(from);
      from.pause();
      to.once('drain', () => {
        waiting.delete(from);
        if (!done) from.resume();
      });
    };
    const fromClient = (chunk: Buffer) => {
      session.bytesFromClient += chunk.length;
      asked.feed(chunk);
      if (opts.keepIdle && leftIdle(asked, compute) && chunk.equals(TERMINATE)) {
        backend.pause();
        finish('client_closed', true);
        client.end();
        return;
      }
      forward(client, backend, chunk);
    };
    const fromBackend = (chunk: Buffer) => {
      session.bytesToClient += chunk.length;
      compute.feed(chunk);
      forward(backend, client, chunk);
    };
    const clientGone = () => {
      backend.destroy();
      finish('client_closed');
    };
    const computeGone = () => {
      const vanished = !done && !asked.terminated && !compute.saidWhy && compute.atBoundary;
      if (vanished && client.writable) client.end(COMPUTE_VANISHED);
      else client.end();
      finish(asked.terminated ? 'client_closed' : 'compute_closed');
    };
    // Either side may have gone while the compute was being woken.
    if (client.destroyed || backend.destroyed) {
      client.destroy();
      backend.destroy();
      finish(client.destroyed ? 'client_closed' : 'compute_closed');
      return;
    }
    on(client, 'data', fromClient);
    on(backend, 'data', fromBackend);
    for (const event of ['end', 'close', 'error']) {
      on(client, event, clientGone);
      on(backend, event, computeGone);
    }
    if (opts.fromCompute?.length) fromBackend(opts.fromCompute);
    if (opts.fromClient?.length) fromClient(opts.fromClient);
    if (done) return;
    client.resume();
    backend.resume();
  });
}
