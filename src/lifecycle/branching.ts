import type pg from 'pg';
import type { BranchRef, ProviderState } from '../providers/provider.ts';
import type { PointInTime } from './point-in-time.ts';

/** Runs inside the catalog transaction that makes a restore or reset take effect. */
export type CommitStep = (tx: pg.ClientBase) => Promise<void>;

/** What a provider does for history, branches and point-in-time restore. */
export interface Branching {
  /** The earliest moment `at` may name for this branch; undefined = no history (only "now"). */
  earliest(ref: BranchRef, retentionSeconds: number): Promise<Date | undefined>;
  /**
   * Gives the new branch `child` the data of `source` as it is now, or as it was at `at`.
   * `running` says whether source's compute runs (it keeps running: the copy is made online).
   */
  branch(source: BranchRef, child: BranchRef, at: PointInTime | undefined, running: boolean): Promise<ProviderState>;
  /**
   * Rewinds `ref` (its compute stopped) to `at`; what it held until now becomes the branch
   * `before`'s. `commit` runs in the catalog transaction that makes it so.
   */
  restore(ref: BranchRef, at: PointInTime, before: BranchRef, commit: CommitStep): Promise<ProviderState>;
  /** `ref` (its compute stopped) becomes a copy of `parent` as it is now. */
  reset(ref: BranchRef, parent: BranchRef, parentRunning: boolean, commit: CommitStep): Promise<ProviderState>;
  /** Removes history older than the retention window. */
  prune(ref: BranchRef, retentionSeconds: number): Promise<void>;
  /** Takes a base backup of a running compute when its newest is older than the interval. */
  backupIfDue(ref: BranchRef, retentionSeconds: number): Promise<void>;
  /** At start, before anything is served: puts back the files of restores and resets a crash interrupted. */
  recoverInterrupted(): Promise<void>;
}
