/**
 * A compute's start: under its fleet-wide wake lock (one start across gateways, fenced by the
 * lock's token) and within the wake timeout.
 */
import { type Coordinator, waitForLock } from './coord/coordinator.ts';
import type { ComputeTarget } from './compute-target.ts';
import { ComputeStartError } from './errors.ts';
import type { ComputeAddress } from './providers/provider.ts';

export interface ComputeStartOptions {
  wakeTimeoutMs: number;
  /** With a shared coordinator, a start holds the compute's wake lock: one start across gateways. */
  coord?: Coordinator;
  /**
   * The fencing rule: records the lock's token as the compute's newest wake and answers false
   * when a newer one is recorded already (this holder's lease ran out and another took over).
   */
  claimWake?: (branchId: string, token: number) => Promise<boolean>;
}

/**
 * Starts the compute, giving up after wakeTimeoutMs. A start given up on goes on, and is stopped
 * once it settles: `abandoned` gets the promise of that clean-up.
 */
export async function startCompute(
  target: Pick<ComputeTarget, 'provider' | 'ref'>, opts: ComputeStartOptions, abandoned: (cleanedUp: Promise<void>) => void,
): Promise<ComputeAddress> {
  const { provider, ref } = target;
  const attempt = lockedStart(target, opts);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ComputeStartError(
      `the database did not start within ${Math.round(opts.wakeTimeoutMs / 1000)} s`)), opts.wakeTimeoutMs);
  });
  try {
    return await Promise.race([attempt, timeout]);
  } catch (err) {
    abandoned(attempt.then(() => provider.stop(ref), () => {}).catch(() => {}));
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * provider.start under the compute's fleet-wide wake lock (a lease, renewed by nobody: it covers
 * the wake timeout, so a gateway that dies holding it frees it then). A later holder finds the
 * compute started and its start returns at once.
 */
async function lockedStart({ provider, ref }: Pick<ComputeTarget, 'provider' | 'ref'>, opts: ComputeStartOptions): Promise<ComputeAddress> {
  const coord = opts.coord;
  if (!coord?.shared) return provider.start(ref);
  const lock = await waitForLock(coord, `wake:${ref.branchId}`, opts.wakeTimeoutMs + 5000, opts.wakeTimeoutMs);
  if (!lock) throw new ComputeStartError('another gateway is starting this database and has not finished; try again');
  try {
    if (opts.claimWake && !(await opts.claimWake(ref.branchId, lock.token))) {
      throw new ComputeStartError('a newer wake of this database took over; try again');
    }
    return await provider.start(ref);
  } finally {
    await lock.release();
  }
}
