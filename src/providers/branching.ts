import type pg from 'pg';
import type { BranchRef, ProviderState } from './provider.ts';
import type { PointInTime } from './point-in-time.ts';

/**
 * Runs inside the catalog transaction that makes a restore or reset take effect; `kept` is what the
 * provider keeps for the branch a restore makes of the state before it.
 */
export type CommitStep = (tx: pg.ClientBase, kept?: ProviderState) => Promise<void>;

/** What a provider does for history, branches and point-in-time restore. */
export interface Branching {
  /** A branch with children can be deleted (they move up to its parent); false: delete them first. */
  readonly deletesBranchesWithChildren: boolean;
  /** The earliest moment `at` may name for this branch; undefined = no history (only "now"). */
  earliest(ref: BranchRef, retentionSeconds: number): Promise<Date | undefined>;
  /**
   * Gives the new branch `child` the data of `source` as it is now, or as it was at `at`.
   * `running` says whether source's compute runs (it keeps running: the copy is made online).
   * Returns the state to keep for `child`.
   */
  branch(source: BranchRef, child: BranchRef, at: PointInTime | undefined, running: boolean): Promise<ProviderState>;
  /**
   * Rewinds `ref` (its compute stopped) to `at`; what it held until now becomes the branch
   * `before`'s. `commit` runs in the catalog transaction that makes it so.
   */
  restore(ref: BranchRef, at: PointInTime, before: BranchRef, commit: CommitStep): Promise<void>;
  /** `ref` (its compute stopped) becomes a copy of `parent` as it is now. */
  reset(ref: BranchRef, parent: BranchRef, parentRunning: boolean, commit: CommitStep): Promise<void>;
  /** Removes history older than the retention window. */
  prune(ref: BranchRef, retentionSeconds: number): Promise<void>;
  /** Takes a base backup of a running compute when its newest is older than the interval. */
  backupIfDue(ref: BranchRef, retentionSeconds: number): Promise<void>;
  /**
   * At start, before anything is served: puts back the files of restores and resets a crash
   * interrupted, or finishes a branch the provider had already made (it is then 'ready').
   */
  recoverInterrupted(): Promise<void>;
}
