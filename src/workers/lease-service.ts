import type { RouteCache } from '../catalog/route-cache.ts';
import type { ComputeManager } from '../computes.ts';
import type { Lease, TerminateScope } from '../compute-target.ts';
import { NotFoundError, type PgfleetError } from '../errors.ts';
import type { ComputeAddress } from '../providers/provider.ts';
import type { BranchRoute } from '../catalog/routes.ts';
import type { IpcPeer } from './ipc.ts';

/** A compute address as it crosses IPC (a Neon one's passwords as entries). */
export type WireAddress =
  | { kind: 'unix'; socketPath: string }
  | { kind: 'tcp'; host: string; port: number; servername: string; ca?: string; passwords: [string, string][] };

export function toWire(address: ComputeAddress): WireAddress {
  if (address.kind === 'unix') return address;
  if (address.kind === 'tcp') return { ...address, passwords: [...address.passwords] };
  throw new Error('a node-link address is opened by the worker itself');
}

export function fromWire(address: WireAddress): ComputeAddress {
  return address.kind === 'unix' ? address : { ...address, passwords: new Map(address.passwords) };
}

/**
 * The primary's side of compute leases for its proxy workers: a worker asks for the compute of an
 * endpoint, the primary acquires it as it would for a session of its own (one wake however many
 * workers ask, idle suspend counted on every worker's sessions) and keeps the lease until the
 * worker lets it go or dies. The compute manager's `state` and `terminate` events reach every worker.
 */
export class LeaseService {
  private seq = 0;
  private readonly leases = new Map<IpcPeer, Map<number, Lease>>();

  constructor(
    private readonly routes: RouteCache,
    private readonly acquire: (route: BranchRoute) => Promise<Lease>,
    computes: ComputeManager,
  ) {
    computes.on('state', (branchId: string, state: string) => {
      for (const peer of this.leases.keys()) peer.notify('computes.state', { branchId, state });
    });
    computes.on('terminate', (branchId: string, reason: PgfleetError, scope: TerminateScope = {}) => {
      const why = { message: reason.message, sqlstate: reason.sqlstate, httpStatus: reason.httpStatus, code: reason.code };
      for (const peer of this.leases.keys()) peer.notify('computes.terminate', { branchId, reason: why, backendPids: scope.backendPids });
    });
  }

  attach(peer: IpcPeer): void {
    const held = new Map<number, Lease>();
    this.leases.set(peer, held);
    peer.handle('lease.acquire', async ({ endpointId }: { endpointId: string }) => {
      const route = await this.routes.byEndpoint(endpointId);
      if (!route) throw new NotFoundError(`endpoint ${endpointId} no longer exists`);
      const lease = await this.acquire(route);
      if (!this.leases.has(peer)) {
        lease.release(); // the worker died while its compute woke
        throw new Error('worker gone');
      }
      const id = ++this.seq;
      held.set(id, lease);
      return { id, address: toWire(lease.address) };
    });
    peer.onNote('lease.release', ({ id }: { id: number }) => {
      held.get(id)?.release();
      held.delete(id);
    });
  }

  /** A worker died: its sessions are gone, so are its holds on computes. */
  forget(peer: IpcPeer): void {
    for (const lease of this.leases.get(peer)?.values() ?? []) lease.release();
    this.leases.delete(peer);
  }

  /** Leases held for workers now (for tests and /metrics). */
  get held(): number {
    let n = 0;
    for (const m of this.leases.values()) n += m.size;
    return n;
  }
}
