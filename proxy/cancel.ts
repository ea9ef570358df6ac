/**
 * Cancel keys. A client's BackendKeyData carries the compute's real backend pid (what
 * pg_backend_pid() and a NotificationResponse say) and a secret of the proxy's own: 32 random
 * bits, fresh for every session, so that a kept backend's next client cannot cancel with its last
 * client's key. Real pids repeat across computes, nodes and Neon, so a key is the pair (pid,
 * secret), unique in the fleet: it is held in the coordinator under this gateway's id, and a
 * CancelRequest that lands on another gateway is passed here (its channel) and carried out by the
 * gateway that relays the session.
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

/** Where a session's cancels go: its backend, or (a pooled client) whichever runs its query when the cancel comes, if any. */
export interface CancelRoute {
  cancelTarget(): CancelTarget | undefined;
}

/** The key a client is given (BackendKeyData) and sends back (CancelRequest). */
export interface CancelKey {
  pid: number;
  secret: number;
}

/** Linux pids never exceed 2^22 (pid_max's ceiling): a pooled client's made-up pid is above, so it is never a backend's. */
const PID_MAX = 2 ** 22;

/** A pid for a client that has no backend of its own (a pooled client): never the pid of any backend. */
export const pooledClientPid = () => crypto.randomInt(PID_MAX + 1, 2 ** 31);

const keyOf = (key: CancelKey) => `cancel:${key.pid >>> 0}:${key.secret >>> 0}`;

export class CancelKeys {
  private readonly routes = new Map<string, CancelRoute>();

  constructor(private readonly coord: Coordinator) {
    coord.subscribe(gatewayChannel(coord.gatewayId), (m) => {
      if (m.type === 'cancel') void this.cancelHere({ pid: Number(m.pid), secret: Number(m.secret) }).catch(() => false);
    });
  }

  /**
   * A key for a session whose client is told `pid`: a fresh random secret, drawn again in the rare
   * case the pair is taken anywhere in the fleet. Cancels go where `route` says when they arrive.
   */
  async issue(pid: number, route: CancelRoute): Promise<CancelKey> {
    for (;;) {
      const key = { pid: pid >>> 0, secret: crypto.randomBytes(4).readUInt32BE(0) };
      const id = keyOf(key);
      if (this.routes.has(id) || !(await this.coord.hold(id, this.coord.gatewayId))) continue;
      this.routes.set(id, route);
      return key;
    }
  }

  revoke(key: CancelKey): void {
    const id = keyOf(key);
    this.routes.delete(id);
    void this.coord.drop(id);
  }

  /**
   * Forwards the cancel when the key is known here, or passes it to the gateway that holds it;
   * an unknown key (a wrong secret among them) is dropped silently, as Postgres does.
   */
  async cancel(key: CancelKey): Promise<boolean> {
    const id = keyOf(key);
    if (this.routes.has(id)) return this.cancelHere(key);
    const gateway = await this.coord.lookup(id);
    if (!gateway || gateway === this.coord.gatewayId) return false;
    await this.coord.publish(gatewayChannel(gateway), { type: 'cancel', pid: key.pid >>> 0, secret: key.secret >>> 0 });
    return true;
  }

  private async cancelHere(key: CancelKey): Promise<boolean> {
    const target = this.routes.get(keyOf(key))?.cancelTarget();
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
