/**
 * What several gateways of one fleet share at connection speed. One small interface, two
 * implementations: in-process (one gateway, the default) and Redis (REDIS_URL). Everything a
 * gateway puts here it also keeps itself and puts again on every heartbeat, so a Redis that
 * restarts empty is whole again within one heartbeat; calls never wait on a Redis that is down.
 */

import type { WindowCounters } from '../limits/window-counters.ts';

/** A held lock: its fencing token grows with every grant, so a later holder always has a larger one. */
export interface HeldLock {
  token: number;
  /** Whether the lock is still ours (the lease not lost to expiry and another holder). */
  stillHeld(): Promise<boolean>;
  release(): Promise<void>;
}

export type Message = Record<string, unknown> & { type: string };

/** The auth-failure windows (src/limits) are one part: with Redis they count across gateways. */
export interface Coordinator extends WindowCounters {
  /** This gateway's id in the fleet (its node id). */
  readonly gatewayId: string;
  /** True when the state is shared with other gateways (Redis). */
  readonly shared: boolean;

  /** A value held while this gateway lives (a cancel key): false when another gateway holds the key. */
  hold(key: string, value: string): Promise<boolean>;
  /** Lets go of a held value (the session ended). */
  drop(key: string): Promise<void>;
  /** A held value of any gateway. */
  lookup(key: string): Promise<string | undefined>;

  /** Sets this gateway's share of a fleet-wide count (open sessions of a database). */
  setShare(key: string, value: number): Promise<void>;
  /** The sum of the live gateways' shares. */
  total(key: string): Promise<number>;

  /** A fleet-wide flag with a lifetime (a quota used up). */
  setFlag(key: string, value: string, ttlMs: number): Promise<void>;
  getFlag(key: string): Promise<string | undefined>;
  clearFlag(key: string): Promise<void>;

  /** The lock, when free, for leaseMs; a holder that dies lets it go when the lease ends. */
  tryLock(name: string, leaseMs: number): Promise<HeldLock | undefined>;

  /** Sends to every gateway subscribed to channel (this one included). */
  publish(channel: string, message: Message): Promise<void>;
  subscribe(channel: string, handler: (message: Message) => void): void;
  /**
   * Whether messages other gateways publish reach this one now (always, in process); while not,
   * whatever this gateway keeps in memory on the strength of invalidations must not be trusted.
   */
  readonly listening: boolean;
  /** Called after a lost connection to the shared store comes back: messages may have been missed. */
  onReconnect(handler: () => void): void;

  close(): Promise<void>;
}

/** Channels every gateway listens on. */
export const INVALIDATE = 'invalidate';
/** The channel of one gateway (cancels for sessions it relays). */
export const gatewayChannel = (gatewayId: string) => `gateway:${gatewayId}`;

/** Waits for a lock, polling, until `waitMs` has passed. */
export async function waitForLock(coord: Coordinator, name: string, leaseMs: number, waitMs: number): Promise<HeldLock | undefined> {
  const deadline = Date.now() + waitMs;
  for (let pause = 10; ; pause = Math.min(pause * 2, 100)) {
    const lock = await coord.tryLock(name, leaseMs);
    if (lock || Date.now() >= deadline) return lock;
    await new Promise((r) => setTimeout(r, pause));
  }
}
