/**
 * Which accepted sockets the proxy keeps in their handshake. Connections not yet authenticated
 * are capped in total and per client address, shared fairly (src/limits/fair-caps.ts), and one
 * that has not sent a complete startup packet within the startup timeout is dropped: idle or
 * trickling sockets from a few addresses cannot use up what the others need. The cap on all
 * connections is the listener guard's (src/limits/listener-guard.ts, see proxy/server.ts).
 */
import type net from 'node:net';
import { FairCaps } from '../src/limits/fair-caps.ts';

export interface AdmissionLimits {
  /** Connections in their handshake at once, from all addresses. */
  maxHandshakes: number;
  /** Connections in their handshake at once from one client address (an IPv6 /64). */
  maxHandshakesPerAddress: number;
  /** Time from accept to a complete startup packet (after TLS). */
  startupTimeoutMs: number;
}

/** Where one admitted connection is in its handshake; the listener hands it to the connection. */
export interface HandshakeProgress {
  /** The startup packet is complete: the startup timeout no longer applies. */
  startupReceived(): void;
  /** Authenticated: the connection leaves the handshake caps. */
  authenticated(): void;
}

export type Admitted = { ok: true; progress: HandshakeProgress } | { ok: false; reason: string };

export class Admission {
  private readonly caps: FairCaps;

  constructor(readonly limits: AdmissionLimits) {
    this.caps = new FairCaps({ total: limits.maxHandshakes, perAddress: limits.maxHandshakesPerAddress }, 'connections in their handshake');
  }

  /** Admits a just-accepted socket or says why not; an admitted one is tracked until it closes. */
  admit(socket: net.Socket): Admitted {
    const place = this.caps.take(socket.remoteAddress);
    if (!place.ok) return place;
    return { ok: true, progress: new InHandshake(socket, place.release, this.limits.startupTimeoutMs) };
  }

  /** Connections in their handshake now (metrics and tests). */
  get inHandshake(): number {
    return this.caps.count;
  }
}

const destroy = (socket: net.Socket) => socket.destroy();

/**
 * One admitted connection's place in the handshake caps and its startup timer. Once it has
 * authenticated, nothing here is referenced any more: a session holds none of it.
 */
class InHandshake implements HandshakeProgress {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly socket: net.Socket, private readonly leave: () => void, startupTimeoutMs: number) {
    this.timer = setTimeout(destroy, startupTimeoutMs, socket);
    socket.on('close', this.left);
  }

  startupReceived(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  authenticated(): void {
    this.left();
    this.socket.off('close', this.left);
  }

  private readonly left = (): void => {
    this.startupReceived();
    this.leave();
  };
}
