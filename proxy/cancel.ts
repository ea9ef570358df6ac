/**
 * Cancel keys: each session gets the proxy's own (pid, secret), mapped to the compute's key,
 * so that a CancelRequest coming back to the proxy reaches the right compute.
 */
import crypto from 'node:crypto';
import { serialize } from 'pg-protocol';
import type { ComputeAddress } from '../src/providers/provider.ts';
import { openBackendSocket } from './backend.ts';

/** The compute's key of the backend a cancel goes to. */
export interface CancelTarget {
  address: ComputeAddress;
  backendPid: number;
  backendSecret: number;
  /** Called once the cancel has been delivered (or failed). */
  settled?: () => void;
}

/** A session's backend: fixed, or (pooled clients) whichever runs its query right now, if any. */
type CancelRoute = CancelTarget | (() => CancelTarget | undefined);

export class CancelKeys {
  private readonly targets = new Map<number, { secret: number; route: CancelRoute }>();

  /** A fresh proxy key for a session on `address` whose compute key is (backendPid, backendSecret). */
  issue(address: ComputeAddress, backendPid: number, backendSecret: number): { pid: number; secret: number } {
    return this.issueRouted({ address, backendPid, backendSecret });
  }

  /** A fresh proxy key whose cancels go where `route` says at the time they arrive. */
  issueRouted(route: CancelRoute): { pid: number; secret: number } {
    let pid: number;
    do pid = crypto.randomInt(1, 2 ** 31); while (this.targets.has(pid));
    const secret = crypto.randomBytes(4).readUInt32BE(0);
    this.targets.set(pid, { secret, route });
    return { pid, secret };
  }

  revoke(pid: number): void {
    this.targets.delete(pid);
  }

  /** Forwards the cancel when the key is known; an unknown key is dropped silently, as Postgres does. */
  async cancel(pid: number, secret: number): Promise<boolean> {
    const entry = this.targets.get(pid);
    if (!entry || entry.secret !== secret) return false;
    const target = typeof entry.route === 'function' ? entry.route() : entry.route;
    if (!target) return false;
    await sendCancel(target);
    return true;
  }
}

/** Sends a CancelRequest to the compute and waits until it has closed the connection. */
export async function sendCancel(target: CancelTarget): Promise<void> {
  try {
    const socket = await openBackendSocket(target.address);
    socket.on('error', () => {});
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end(serialize.cancel(target.backendPid, target.backendSecret));
    });
  } finally {
    target.settled?.();
  }
}
