/** The vocabulary of compute lifecycles: what a compute is run for, its states, leases and causes. */
import type { PgfleetError } from './errors.ts';
import type { BranchRef, ComputeAddress, Provider } from './providers/provider.ts';

export type ComputeState = 'suspended' | 'starting' | 'running' | 'stopping' | 'failed';

/** What the manager needs to run one branch's compute. */
export interface ComputeTarget {
  ref: BranchRef;
  /** Whose compute this is (usage is billed to the partner). */
  partnerId: string;
  provider: Provider;
  /** 0 = never suspend for idleness. */
  suspendTimeoutSeconds: number;
  /** Set when the database must not be served (still being created, its resource gone): every wake fails with it. */
  unavailable?: PgfleetError;
}

/** Which sessions a 'terminate' event ends: all of the compute's, or those these backends serve; `fromFleet`: relayed from another gateway. */
export interface TerminateScope {
  backendPids?: number[];
  fromFleet?: boolean;
}
/** Why a compute started: a client connected, or the API (or another node's API) asked. */
export type WakeCause = 'connection' | 'api';
/**
 * Why a compute stopped: idle past its suspend timeout, the API, a used-up quota, room for another
 * compute, its branch being rewritten (a restore or reset: the reason's code), the database deleted,
 * the gateway stopping, or the compute exiting by itself.
 */
export type SuspendCause = 'idle' | 'api' | 'quota' | 'room' | 'deleted' | 'shutdown' | 'exited' | string;

/** A connection's hold on a running compute; release it when the session ends. */
export interface Lease {
  address: ComputeAddress;
  release(): void;
}

const nothingToRelease = () => {};

/** A lease of a compute on another node: that node counts the session while its link is open, so nothing is released here. */
export const linkedLease = (address: ComputeAddress): Lease => ({ address, release: nothingToRelease });

/**
 * A lease whose release tells its owner once, with the token it was given: an object of its own
 * and one function per owner, no closure per session (idle sessions are many).
 */
export class HeldLease<T> implements Lease {
  private held = true;

  constructor(readonly address: ComputeAddress, private readonly end: (token: T) => void, private readonly token: T) {}

  release(): void {
    if (!this.held) return;
    this.held = false;
    this.end(this.token);
  }
}

export interface ComputeInfo {
  state: ComputeState;
  connections: number;
  lastActiveAt: Date | undefined;
  startedAt: Date | undefined;
}
