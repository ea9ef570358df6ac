import { BadRequestError } from '../../errors.ts';
import { type PointInTime, describePoint, parseLsn } from '../point-in-time.ts';
import type { BaseBackup, History } from './histories.ts';

/** Where a recovery starts and which WAL of which history it replays. */
export interface RecoveryPlan {
  base: BaseBackup;
  /** The history the target lies in (its timeline is the one recovery follows). */
  target: History;
  /**
   * The WAL to fetch, from the base's history to the target's: each history's positions from
   * `from` up to `to` (undefined: as far as the store holds). Bytes at or past `to` are not its own
   * (a later history forked there) and are left out.
   */
  wal: { history: History; from: bigint; to: bigint | undefined }[];
}

/** The index in `chain` (nearest first) of the history holding `at`; 0 = the branch's own. */
function linkOf(chain: History[], at: PointInTime | undefined): number {
  if (at === undefined) return 0;
  for (let i = 0; i < chain.length; i++) {
    const h = chain[i]!;
    if (h.ancestorLsn === null) return i;
    if ('lsn' in at ? parseLsn(at.lsn) >= h.ancestorLsn : h.ancestorTime === null || at.time >= h.ancestorTime) return i;
  }
  return chain.length - 1;
}

/**
 * Plans a recovery of the branch whose history chain is `chain` (its own history first, then its
 * ancestors) to `at`, or to the end of its history: the newest base backup before the point,
 * anywhere along the chain (a history holds its ancestor's positions only before where it forked),
 * and the WAL from it on.
 */
export function planRecovery(chain: History[], backups: BaseBackup[], at: PointInTime | undefined): RecoveryPlan {
  const link = linkOf(chain, at);
  // The positions each history of the chain holds as its own: before where its nearer history forked.
  const bound = (i: number): bigint | undefined => (i === 0 ? undefined : chain[i - 1]!.ancestorLsn ?? undefined);
  let best: { backup: BaseBackup; index: number } | undefined;
  for (let i = link; i < chain.length; i++) {
    const limit = bound(i);
    for (const b of backups.filter((b) => b.historyId === chain[i]!.id)) {
      if (limit !== undefined && b.endLsn > limit) continue;
      if (i === link && at !== undefined && ('lsn' in at ? b.endLsn > parseLsn(at.lsn) : b.endTime > at.time)) continue;
      if (!best || b.endLsn > best.backup.endLsn) best = { backup: b, index: i };
    }
  }
  if (!best) throw new BadRequestError(`at: no base backup precedes ${at ? describePoint(at) : 'the end of the history'}`);
  const wal: RecoveryPlan['wal'] = [];
  for (let i = best.index; i >= link; i--) {
    const h = chain[i]!;
    const from = i === best.index ? best.backup.startLsn : h.ancestorLsn ?? h.startLsn;
    wal.push({ history: h, from, to: bound(i) });
  }
  return { base: best.backup, target: chain[link]!, wal };
}

/** The earliest moment of a branch's chain that a base backup reaches back to, within the window. */
export function earliestRestorable(chain: History[], backups: BaseBackup[], windowStart: Date): Date | undefined {
  let earliest: Date | undefined;
  for (let i = 0; i < chain.length; i++) {
    const limit = i === 0 ? undefined : chain[i - 1]!.ancestorLsn;
    for (const b of backups.filter((b) => b.historyId === chain[i]!.id)) {
      if (limit !== undefined && limit !== null && b.endLsn > limit) continue;
      if (!earliest || b.endTime < earliest) earliest = b.endTime;
    }
  }
  if (!earliest) return undefined;
  return earliest > windowStart ? earliest : windowStart;
}
