/**
 * Cancel keys: each session gets the proxy's own (pid, secret), mapped to the compute's key,
 * so that a CancelRequest coming back to the proxy reaches the right compute. The key is also
 * held in the fleet's coordinator under this gateway's id, so a CancelRequest that lands on
 * another gateway is passed here (its channel) and carried out by the gateway that relays the session.
 */
import crypto from 'node:crypto';
import { serialize } from 'pg-protocol';
import { type Coordinator, gatewayChannel } from '../src/coord/coordinator.ts';
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

/** A session's backend: fixed, or (pooled clients) whichever runs its query when the cancel comes, if any. */
type CancelRoute = CancelTarget | (() => CancelTarget | undefined);

const keyOf = (pid: number) => `cancel:${pid}`;

export class CancelKeys {
  private readonly targets = new Map<number, { secret: number; route: CancelRoute }>();

  constructor(private readonly coord: Coordinator) {
    coord.subscribe(gatewayChannel(coord.gatewayId), (m) => {
      if (m.type === 'cancel') void this.cancelHere(Number(m.pid), Number(m.secret)).catch(() => false);
    });
  }

  /** A fresh proxy key, unique in the fleet, for a session on `address` whose compute key is (backendPid, backendSecret). */
  issue(address: ComputeAddress, backendPid: number, backendSecret: number): Promise<{ pid: number; secret: number }> {
    return this.issueRouted({ address, backendPid, backendSecret });
  }

  /** A fresh proxy key whose cancels go where `route` says when they arrive. */
  async issueRouted(route: CancelRoute): Promise<{ pid: number; secret: number }> {
    const secret = crypto.randomBytes(4).readUInt32BE(0);
    for (;;) {
      const pid = crypto.randomInt(1, 2 ** 31);
      if (this.targets.has(pid) || !(await this.coord.hold(keyOf(pid), `${this.coord.gatewayId} ${secret}`))) continue;
      this.targets.set(pid, { secret, route });
      return { pid, secret };
    }
  }

  revoke(pid: number): void {
    this.targets.delete(pid);
    void this.coord.drop(keyOf(pid));
  }

  /**
   * Forwards the cancel when the key is known here, or passes it to the gateway that holds it;
   * an unknown key or a wrong secret is dropped silently, as Postgres does.
   */
  async cancel(pid: number, secret: number): Promise<boolean> {
    if (this.targets.has(pid)) return this.cancelHere(pid, secret);
    const held = await this.coord.lookup(keyOf(pid));
    if (!held) return false;
    const [gateway, heldSecret] = held.split(' ');
    if (Number(heldSecret) !== secret || gateway === this.coord.gatewayId) return false;
    await this.coord.publish(gatewayChannel(gateway!), { type: 'cancel', pid, secret });
    return true;
  }

  private async cancelHere(pid: number, secret: number): Promise<boolean> {
    const entry = this.targets.get(pid);
    if (!entry || entry.secret !== secret) return false;
    const target = typeof entry.route === 'function' ? entry.route() : entry.route;
    if (!target) return false;
    await sendCancel(target);
    return true;
  }
}

/** Sends a CancelRequest for the target's backend and waits until the compute has closed the connection. */
export async function sendCancel(target: CancelTarget): Promise<void> {
  try {
    const socket = await openBackendSocket(target.address, { cancel: true });
    socket.on('error', () => {});
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end(serialize.cancel(target.backendPid, target.backendSecret));
    });
  } finally {
    target.settled?.();
  }
}
