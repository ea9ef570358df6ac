import type pg from 'pg';
import type { PointInTime } from '../point-in-time.ts';
import { parseLsn } from '../point-in-time.ts';

/** One base backup of a branch, as the catalog records it. */
export interface BaseBackup {
  id: string;
  kind: 'template' | 'copy' | 'online';
  timeline: number;
  startLsn: string;
  endLsn: string;
  startTime: Date;
  /** A target at or after this (and endLsn) can start from this backup. */
  endTime: Date;
  bytes: number;
}

/** The catalog, or a client inside one of its transactions. */
type Queryable = { query(text: string, values?: unknown[]): Promise<pg.QueryResult> };

const toBackup = (r: any): BaseBackup => ({
  id: r.id, kind: r.kind, timeline: r.timeline, startLsn: r.start_lsn, endLsn: r.end_lsn,
  startTime: r.start_time, endTime: r.end_time, bytes: Number(r.bytes),
});

/** The catalog's record of base backups, per branch. */
export const baseBackups = {
  async list(db: Queryable, branchId: string): Promise<BaseBackup[]> {
    const { rows } = await db.query('SELECT * FROM base_backups WHERE branch_id = $1 ORDER BY end_time, id', [branchId]);
    return rows.map(toBackup);
  },

  async add(db: Queryable, branchId: string, b: BaseBackup): Promise<void> {
    await db.query(
      `INSERT INTO base_backups (branch_id, id, kind, timeline, start_lsn, end_lsn, start_time, end_time, bytes)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [branchId, b.id, b.kind, b.timeline, b.startLsn, b.endLsn, b.startTime, b.endTime, b.bytes],
    );
  },

  async remove(db: Queryable, branchId: string, id: string): Promise<void> {
    await db.query('DELETE FROM base_backups WHERE branch_id = $1 AND id = $2', [branchId, id]);
  },

  /** Replaces the branch's records with `backups` (files linked into its directory). */
  async replace(db: Queryable, branchId: string, backups: BaseBackup[]): Promise<void> {
    await db.query('DELETE FROM base_backups WHERE branch_id = $1', [branchId]);
    for (const b of backups) await baseBackups.add(db, branchId, b);
  },
};

/** The newest backup a recovery to `target` can start from (ended at or before it). */
export function backupFor(backups: BaseBackup[], target: PointInTime): BaseBackup | undefined {
  const usable = backups.filter((b) => ('time' in target ? b.endTime <= target.time : parseLsn(b.endLsn) <= parseLsn(target.lsn)));
  return usable.at(-1);
}
