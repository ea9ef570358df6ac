import type { ComputeAddress } from '../providers/provider.ts';
import { ComputeManager, type ComputeManagerOptions } from '../computes.ts';
import { PgfleetError } from '../errors.ts';
import type { IpcPeer } from './ipc.ts';

/**
 * A proxy worker's view of the compute manager, which runs in the primary: it starts nothing, and
 * repeats the primary's `state` and `terminate` events, so the worker's sessions, warm backends
 * and pooled sessions end and drop as they do in one process. runningAddress answers from what
 * this worker's leases were given while the primary says the compute runs.
 */
export class RemoteComputes extends ComputeManager {
  private readonly addresses = new Map<string, ComputeAddress>();

  constructor(peer: IpcPeer, opts: ComputeManagerOptions) {
    super(opts);
    peer.onNote('computes.state', ({ branchId, state }: { branchId: string; state: string }) => {
      if (state !== 'running') this.addresses.delete(branchId);
      this.emit('state', branchId, state);
    });
    peer.onNote('computes.terminate', ({ branchId, reason, backendPids }) => {
      const why = new PgfleetError(reason.message, reason.sqlstate, reason.httpStatus, reason.code);
      this.emit('terminate', branchId, why, backendPids ? { backendPids } : {});
    });
  }

  /** A lease was given this address: the compute runs there now. */
  leased(branchId: string, address: ComputeAddress): ComputeAddress {
    const known = this.addresses.get(branchId);
    // The same object for the same socket, as the one-process manager gives (warm backends compare them).
    if (known?.kind === 'unix' && address.kind === 'unix' && known.socketPath === address.socketPath) return known;
    this.addresses.set(branchId, address);
    return address;
  }

  override runningAddress(branchId: string): ComputeAddress | undefined {
    return this.addresses.get(branchId);
  }
}
