/**
 * Who runs a database's computes: this gateway, or the node of the fleet the database is placed
 * on. Both have one shape, so the API and the proxy do the same thing whichever it is: the
 * owner here drives the compute manager and the provider; an owner elsewhere asks that node over
 * the node link.
 */
import type { BranchCall } from '../branch-calls.ts';
import type { BranchRoute } from '../catalog/routes.ts';
import { branchRefOf } from '../catalog/routes.ts';
import type { ComputeManager } from '../computes.ts';
import { type ComputeState, type ComputeTarget, type Lease, linkedLease } from '../compute-target.ts';
import type { BranchRef, Provider, ProviderState } from '../providers/provider.ts';
import type { Nodes } from './nodes.ts';

/** A compute as an owner knows it. */
export interface OwnedState {
  state: ComputeState;
  lastActiveAt: Date | null;
  /** Client sessions this gateway relays to it now. */
  connections: number;
}

export interface Owner {
  /**
   * The owner is this gateway: it keeps the database's upkeep, and routes to it may be kept in
   * memory (they name no other node's address or heartbeat).
   */
  readonly here: boolean;
  /** What the provider makes for a new database (or branch); returns the state to keep. */
  create(provider: Provider, ref: BranchRef, again?: boolean): Promise<ProviderState>;
  /** The compute's roles follow the catalog: now when it runs, else at its next start. */
  syncRoles(provider: Provider, route: BranchRoute): Promise<ProviderState>;
  wake(route: BranchRoute): Promise<void>;
  suspend(route: BranchRoute): Promise<void>;
  /** Stops the branch's compute and removes what the owner holds of it (its files there). */
  remove(route: BranchRoute): Promise<void>;
  /** A session's hold on the branch's compute. */
  acquire(route: BranchRoute): Promise<Lease>;
  /** The compute's state; `recorded` is what the catalog last heard, for an owner that knows no better. */
  state(branchId: string, recorded: OwnedState): OwnedState;
  /** The database's settings changed (its suspend timeout): a running compute takes them now. */
  retarget(route: BranchRoute): void;
  /** Runs a branch call (branch, restore, reset, delete) where the data is; `here` runs it on this node. */
  branchCall(call: BranchCall, here: (call: BranchCall) => Promise<unknown>): Promise<unknown>;
}

/** The owner is this gateway: its compute manager and the region's provider. */
class OwnerHere implements Owner {
  readonly here = true;

  constructor(private readonly computes: ComputeManager, private readonly targetFor: (route: BranchRoute) => ComputeTarget) {}

  create(provider: Provider, ref: BranchRef, again?: boolean): Promise<ProviderState> {
    return provider.create(ref, again ? { again } : undefined);
  }

  syncRoles(provider: Provider, route: BranchRoute): Promise<ProviderState> {
    return provider.syncRoles(branchRefOf(route));
  }

  async wake(route: BranchRoute): Promise<void> {
    await this.computes.wake(this.targetFor(route));
  }

  suspend(route: BranchRoute): Promise<void> {
    return this.computes.suspend(route.branchId);
  }

  remove(route: BranchRoute): Promise<void> {
    return this.computes.remove(route.branchId);
  }

  acquire(route: BranchRoute): Promise<Lease> {
    const target = this.targetFor(route);
    if (target.unavailable) return Promise.reject(target.unavailable);
    return this.computes.acquire(target);
  }

  state(branchId: string, recorded: OwnedState): OwnedState {
    const info = this.computes.info(branchId);
    return { state: info.state, lastActiveAt: info.lastActiveAt ?? recorded.lastActiveAt, connections: info.connections };
  }

  retarget(route: BranchRoute): void {
    this.computes.retarget(this.targetFor(route));
  }

  branchCall(call: BranchCall, here: (call: BranchCall) => Promise<unknown>): Promise<unknown> {
    return here(call);
  }
}

/** The owner is another node: asked over the node link; its sessions are relayed through it. */
class OwnerElsewhere implements Owner {
  readonly here = false;

  constructor(private readonly nodes: Nodes, private readonly nodeId: string, private readonly targetFor: (route: BranchRoute) => ComputeTarget) {}

  private async node() {
    return this.nodes.record(this.nodeId);
  }

  async create(): Promise<ProviderState> {
    // A local database's files are made at its first start, on whichever node runs it.
    return {};
  }

  async syncRoles(_provider: Provider, route: BranchRoute): Promise<ProviderState> {
    await this.nodes.ask(await this.node(), 'sync-roles', branchRefOf(route));
    return {};
  }

  async wake(route: BranchRoute): Promise<void> {
    await this.nodes.ask(await this.node(), 'wake', branchRefOf(route));
  }

  async suspend(route: BranchRoute): Promise<void> {
    await this.nodes.ask(await this.node(), 'suspend', branchRefOf(route));
  }

  async remove(route: BranchRoute): Promise<void> {
    await this.nodes.ask(await this.node(), 'delete', branchRefOf(route));
  }

  async acquire(route: BranchRoute): Promise<Lease> {
    const target = this.targetFor(route);
    if (target.unavailable) throw target.unavailable;
    // The owning node counts the session on its compute for as long as the link is open.
    return linkedLease(this.nodes.addressOf({ ...route, node: route.node ?? await this.node() }, target.ref));
  }

  state(_branchId: string, recorded: OwnedState): OwnedState {
    return recorded;
  }

  /** The owning node reads the database's settings at its compute's next start. */
  retarget(): void {}

  async branchCall(call: BranchCall): Promise<unknown> {
    return this.nodes.branchCall(await this.node(), call);
  }
}

/** The owner of each database, by the node it is placed on (null: no node, served where it is asked). */
export class Owners {
  private readonly here: OwnerHere;

  constructor(private readonly nodes: Nodes, computes: ComputeManager, private readonly targetFor: (route: BranchRoute) => ComputeTarget) {
    this.here = new OwnerHere(computes, targetFor);
  }

  of(nodeId: string | null | undefined): Owner {
    return nodeId == null || nodeId === this.nodes.id ? this.here : new OwnerElsewhere(this.nodes, nodeId, this.targetFor);
  }

  ofRoute(route: BranchRoute): Owner {
    return this.of(route.node?.id);
  }
}
