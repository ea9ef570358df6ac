/**
 * Which accepted sockets the proxy keeps. Connections still in their handshake (not yet
 * authenticated) are capped in total and per client address, and one that has not sent a
 * complete startup packet within the startup timeout is dropped: idle or trickling sockets
 * from one address cannot use up the descriptors the others need. The total connection cap
 * itself is the listener's maxConnections (see proxy/server.ts).
 */
import type net from 'node:net';
import { AddressCounts } from '../src/limits/address-counts.ts';

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
  private handshakes = 0;
  private readonly perAddress = new AddressCounts();

  constructor(readonly limits: AdmissionLimits) {}

  /** Admits a just-accepted socket or says why not; an admitted one is tracked until it closes. */
  admit(socket: net.Socket): Admitted {
    const release = this.perAddress.take(socket.remoteAddress, this.limits.maxHandshakesPerAddress);
    if (!release) return { ok: false, reason: 'too many connections in their handshake from this address' };
    if (this.handshakes >= this.limits.maxHandshakes) {
      release();
      return { ok: false, reason: 'too many connections in their handshake' };
    }
    this.handshakes++;
    let inHandshake = true;
    const leave = () => {
      if (!inHandshake) return;
      inHandshake = false;
      this.handshakes--;
      release();
    };
    const startupTimer = setTimeout(() => socket.destroy(), this.limits.startupTimeoutMs);
    socket.once('close', () => {
      clearTimeout(startupTimer);
      leave();
    });
    return {
      ok: true,
      progress: {
        startupReceived: () => clearTimeout(startupTimer),
        authenticated: leave,
      },
    };
  }

  /** Connections in their handshake now (metrics and tests). */
  get inHandshake(): number {
    return this.handshakes;
  }
}
