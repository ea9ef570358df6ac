/**
 * Cancel keys: each session gets the proxy's own (pid, secret), mapped to the compute's key,
 * so that a CancelRequest coming back to the proxy reaches the right compute.
 */
import crypto from 'node:crypto';
import { serialize } from 'pg-protocol';
import type { ComputeAddress } from '../src/providers/provider.ts';
import { openBackendSocket } from './backend.ts';

interface CancelTarget {
  secret: number;
  address: ComputeAddress;
  backendPid: number;
  backendSecret: number;
}

export class CancelKeys {
  private readonly targets = new Map<number, CancelTarget>();

  /** A fresh proxy key for a session on `address` whose compute key is (backendPid, backendSecret). */
  issue(address: ComputeAddress, backendPid: number, backendSecret: number): { pid: number; secret: number } {
    let pid: number;
    do pid = crypto.randomInt(1, 2 ** 31); while (this.targets.has(pid));
    const secret = crypto.randomBytes(4).readUInt32BE(0);
    this.targets.set(pid, { secret, address, backendPid, backendSecret });
    return { pid, secret };
  }

  revoke(pid: number): void {
    this.targets.delete(pid);
  }

  /** Forwards the cancel when the key is known; an unknown key is dropped silently, as Postgres does. */
  async cancel(pid: number, secret: number): Promise<boolean> {
    const t = this.targets.get(pid);
    if (!t || t.secret !== secret) return false;
    const socket = await openBackendSocket(t.address);
    socket.on('error', () => {});
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end(serialize.cancel(t.backendPid, t.backendSecret));
    });
    return true;
  }
}
