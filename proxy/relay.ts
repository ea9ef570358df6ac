import type { Duplex } from 'node:stream';
import { ClientStream, ComputeStream, leftIdle } from './protocol/message-framing.ts';
import { TERMINATE, errorResponse } from './protocol/messages.ts';
import type { ServerParameters } from './protocol/server-parameters.ts';
import type { Session } from './session.ts';

/** How a relayed session ended. */
export type RelayOutcome = 'client_closed' | 'compute_closed';

/** Told once how the relay ended. */
export interface RelayEndListener {
  relayEnded(end: RelayEnd): void;
}

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
  parameters?: ServerParameters;
  /** A backend the client leaves idle is handed back (RelayEnd.idle) rather than closed. */
  keepIdle?: boolean;
}

/** What pgfleet says when the compute vanished without a word (it crashed or was killed). */
const COMPUTE_VANISHED = errorResponse({
  sqlstate: '57P02',
  message: 'terminating connection because the compute stopped unexpectedly',
  hint: 'In a moment you should be able to reconnect to the database and repeat your command.',
});

const ENDS = ['end', 'close', 'error'] as const;

/**
 * Relays raw bytes both ways until either side goes, then tells `ended` once. Client gone → the
 * compute's socket is closed (its backend process ends), unless the client left it idle and
 * keepIdle asks for it. Compute gone → the client gets everything it sent, in order, then a
 * close; only when the compute vanished without a FATAL of its own (a crash) does pgfleet add
 * one, between two messages as a server would.
 *
 * An idle session is mostly this object, so it holds only its state and the four listeners it
 * needs (no promise, no listener list): gateways hold many thousands of idle sessions.
 */
export function relay(client: Duplex, backend: Duplex, session: Session, opts: RelayOptions, ended: RelayEndListener): void {
  new Relay(client, backend, session, opts.parameters, opts.keepIdle ?? false, ended).start(opts.fromClient, opts.fromCompute);
}

class Relay {
  private readonly compute: ComputeStream;
  private readonly asked = new ClientStream();
  private done = false;
  /** A side paused until the other drains. */
  private clientWaits = false;
  private backendWaits = false;
  /** Listens for the compute's socket to drain (made at the first wait). */
  private backendDrained: (() => void) | undefined;
  /** Listens for the client's socket to drain (made at the first wait). */
  private clientDrained: (() => void) | undefined;

  constructor(
    private readonly client: Duplex,
    private readonly backend: Duplex,
    private readonly session: Session,
    parameters: ServerParameters | undefined,
    private readonly keepIdle: boolean,
    private readonly ended: RelayEndListener,
  ) {
    this.compute = new ComputeStream(parameters);
  }

  start(fromClient: Buffer | undefined, fromCompute: Buffer | undefined): void {
    const { client, backend } = this;
    // Either side may have gone while the compute was being woken.
    if (client.destroyed || backend.destroyed) {
      client.destroy();
      backend.destroy();
      this.finish(client.destroyed ? 'client_closed' : 'compute_closed');
      return;
    }
    client.on('data', this.fromClient);
    backend.on('data', this.fromBackend);
    for (const event of ENDS) {
      client.on(event, this.clientGone);
      backend.on(event, this.computeGone);
    }
    if (fromCompute?.length) this.fromBackend(fromCompute);
    if (fromClient?.length) this.fromClient(fromClient);
    if (this.done) return;
    client.resume();
    backend.resume();
  }

  private finish(outcome: RelayOutcome, idle = false): void {
    if (this.done) return;
    this.done = true;
    const { client, backend } = this;
    client.off('data', this.fromClient);
    backend.off('data', this.fromBackend);
    for (const event of ENDS) {
      client.off(event, this.clientGone);
      backend.off(event, this.computeGone);
    }
    if (this.clientDrained) client.off('drain', this.clientDrained);
    if (this.backendDrained) backend.off('drain', this.backendDrained);
    this.ended.relayEnded({ outcome, idle });
  }

  private readonly fromClient = (chunk: Buffer): void => {
    this.session.bytesFromClient += chunk.length;
    this.asked.feed(chunk);
    if (this.keepIdle && leftIdle(this.asked, this.compute) && chunk.equals(TERMINATE)) {
      this.backend.pause();
      this.finish('client_closed', true);
      this.client.end();
      return;
    }
    // Backpressure: the client waits while the compute's socket drains.
    if (!this.backend.write(chunk) && !this.clientWaits) {
      this.clientWaits = true;
      this.client.pause();
      this.backend.once('drain', (this.backendDrained ??= () => this.drained('client')));
    }
  };

  private readonly fromBackend = (chunk: Buffer): void => {
    this.session.bytesToClient += chunk.length;
    this.compute.feed(chunk);
    if (!this.client.write(chunk) && !this.backendWaits) {
      this.backendWaits = true;
      this.backend.pause();
      this.client.once('drain', (this.clientDrained ??= () => this.drained('backend')));
    }
  };

  /**
   * The other side's socket drained: this side is read again. The drain listeners are made at the
   * first wait only: most sessions never wait, and idle ones are many.
   */
  private drained(side: 'client' | 'backend'): void {
    if (side === 'client') this.clientWaits = false;
    else this.backendWaits = false;
    if (!this.done) this[side].resume();
  }

  private readonly clientGone = (): void => {
    this.backend.destroy();
    this.finish('client_closed');
  };

  private readonly computeGone = (): void => {
    const { asked, compute, client } = this;
    const vanished = !this.done && !asked.terminated && !compute.saidWhy && compute.atBoundary;
    if (vanished && client.writable) client.end(COMPUTE_VANISHED);
    else client.end();
    this.finish(asked.terminated ? 'client_closed' : 'compute_closed');
  };
}
