import crypto from 'node:crypto';
import type pg from 'pg';
import type { Catalog } from '../../catalog/catalog.ts';
import { formatLsn, parseLsn } from '../point-in-time.ts';

/** The catalog, or a client inside one of its transactions. */
type Queryable = { query(text: string, values?: unknown[]): Promise<pg.QueryResult> };

/** One line of a branch's WAL in the store, on one Postgres timeline (see migration 020). */
export interface History {
  id: string;
  databaseId: string;
  tli: number;
  ancestorId: string | null;
  /** Positions before this are the ancestor's. */
  ancestorLsn: bigint | null;
  ancestorTime: Date | null;
  startLsn: bigint;
  /** Where its WAL in the store ends (exact when no writer holds it). */
  endLsn: bigint;
  endTime: Date | null;
  writerNode: string | null;
  writerGeneration: number | null;
  createdAt: Date;
}

export interface BaseBackup {
  historyId: string;
  id: string;
  kind: 'template' | 'copy' | 'online';
  tli: number;
  startLsn: bigint;
  /** A target at or after this (and endTime) can start from this backup. */
  endLsn: bigint;
  startTime: Date;
  endTime: Date;
  bytes: number;
  /** Its manifest's key in the store. */
  manifest: string;
}

const lsn = (text: string | null): bigint | null => (text === null ? null : parseLsn(text));

const toHistory = (r: any): History => ({
  id: r.id, databaseId: r.database_id, tli: r.timeline, ancestorId: r.ancestor_id, ancestorLsn: lsn(r.ancestor_lsn),
  ancestorTime: r.ancestor_time, startLsn: parseLsn(r.start_lsn), endLsn: parseLsn(r.end_lsn), endTime: r.end_time,
  writerNode: r.writer_node, writerGeneration: r.writer_generation === null ? null : Number(r.writer_generation), createdAt: r.created_at,
});

const toBackup = (r: any): BaseBackup => ({
  historyId: r.history_id, id: r.id, kind: r.kind, tli: r.timeline, startLsn: parseLsn(r.start_lsn), endLsn: parseLsn(r.end_lsn),
  startTime: r.start_time, endTime: r.end_time, bytes: Number(r.bytes), manifest: r.manifest,
});

const HISTORY_COLUMNS = `id, database_id, timeline, ancestor_id, ancestor_lsn::text, ancestor_time, start_lsn::text, end_lsn::text, end_time,
  writer_node, writer_generation, created_at`;

export const newHistoryId = () => `h-${crypto.randomBytes(8).toString('hex')}`;

export interface NewHistory {
  databaseId: string;
  tli: number;
  startLsn: bigint;
  endLsn?: bigint;
  ancestor?: { id: string; lsn: bigint; time: Date };
}

/** The catalog's record of histories and their base backups. */
export class Histories {
  constructor(private readonly catalog: Catalog) {}

  async get(id: string, db: Queryable = this.catalog): Promise<History | undefined> {
    const { rows } = await db.query(`SELECT ${HISTORY_COLUMNS} FROM histories WHERE id = $1`, [id]);
    return rows[0] ? toHistory(rows[0]) : undefined;
  }

  /** The branch's current history; undefined for a branch that never ran. */
  async ofBranch(branchId: string, db: Queryable = this.catalog): Promise<History | undefined> {
    const { rows } = await db.query(`SELECT ${HISTORY_COLUMNS} FROM histories WHERE id = (SELECT history_id FROM branches WHERE id = $1)`, [branchId]);
    return rows[0] ? toHistory(rows[0]) : undefined;
  }

  async create(h: NewHistory, db: Queryable = this.catalog): Promise<History> {
    const id = newHistoryId();
    const { rows } = await db.query(
      `INSERT INTO histories (id, database_id, timeline, start_lsn, end_lsn, end_time, ancestor_id, ancestor_lsn, ancestor_time)
       VALUES ($1, $2, $3, $4, $5, clock_timestamp(), $6, $7, $8) RETURNING ${HISTORY_COLUMNS}`,
      [id, h.databaseId, h.tli, formatLsn(h.startLsn), formatLsn(h.endLsn ?? h.startLsn), h.ancestor?.id ?? null,
        h.ancestor ? formatLsn(h.ancestor.lsn) : null, h.ancestor?.time ?? null]);
    return toHistory(rows[0]);
  }

  attach(branchId: string, historyId: string, db: Queryable = this.catalog): Promise<unknown> {
    return db.query('UPDATE branches SET history_id = $2 WHERE id = $1', [branchId, historyId]);
  }

  /** The history and its ancestors, nearest first. */
  async chain(id: string): Promise<History[]> {
    const { rows } = await this.catalog.query(
      `WITH RECURSIVE c AS (SELECT h.*, 0 AS depth FROM histories h WHERE id = $1
         UNION ALL SELECT h.*, c.depth + 1 FROM histories h JOIN c ON h.id = c.ancestor_id)
       SELECT ${HISTORY_COLUMNS} FROM c ORDER BY depth`, [id]);
    return rows.map(toHistory);
  }

  /** Base backups of these histories, oldest end first. */
  async backups(historyIds: string[], db: Queryable = this.catalog): Promise<BaseBackup[]> {
    const { rows } = await db.query(
      `SELECT history_id, id, kind, timeline, start_lsn::text, end_lsn::text, start_time, end_time, bytes, manifest
         FROM base_backups WHERE history_id = ANY($1) ORDER BY end_lsn, end_time, id`, [historyIds]);
    return rows.map(toBackup);
  }

  async addBackup(b: BaseBackup, db: Queryable = this.catalog): Promise<void> {
    await db.query(
      `INSERT INTO base_backups (history_id, id, kind, timeline, start_lsn, end_lsn, start_time, end_time, bytes, manifest)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
      [b.historyId, b.id, b.kind, b.tli, formatLsn(b.startLsn), formatLsn(b.endLsn), b.startTime, b.endTime, b.bytes, b.manifest]);
  }

  async removeBackup(historyId: string, id: string): Promise<void> {
    await this.catalog.query('DELETE FROM base_backups WHERE history_id = $1 AND id = $2', [historyId, id]);
  }

  /** This node's compute writes the history from now on. */
  async claim(id: string, node: string, generation: number): Promise<void> {
    await this.catalog.query('UPDATE histories SET writer_node = $2, writer_generation = $3 WHERE id = $1', [id, node, generation]);
  }

  /** Records how far the store holds the history (never backwards); `released`: its writer stopped cleanly. */
  async advance(id: string, end: bigint, released: boolean): Promise<void> {
    await this.catalog.query(
      `UPDATE histories SET end_lsn = greatest(end_lsn, $2::pg_lsn), end_time = clock_timestamp()
         ${released ? ', writer_node = NULL, writer_generation = NULL' : ''} WHERE id = $1`, [id, formatLsn(end)]);
  }

  /** Every history of the database that some branch's chain needs (the rest can go). */
  async inUse(databaseId: string): Promise<Set<string>> {
    const { rows } = await this.catalog.query<{ id: string }>(
      `WITH RECURSIVE c AS (SELECT h.id, h.ancestor_id FROM histories h JOIN branches b ON b.history_id = h.id WHERE b.database_id = $1
         UNION SELECT h.id, h.ancestor_id FROM histories h JOIN c ON h.id = c.ancestor_id)
       SELECT id FROM c`, [databaseId]);
    return new Set(rows.map((r) => r.id));
  }

  async ofDatabase(databaseId: string): Promise<History[]> {
    const { rows } = await this.catalog.query(`SELECT ${HISTORY_COLUMNS} FROM histories WHERE database_id = $1`, [databaseId]);
    return rows.map(toHistory);
  }

  async remove(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.catalog.query('UPDATE histories SET ancestor_id = NULL WHERE ancestor_id = ANY($1)', [ids]);
    await this.catalog.query('DELETE FROM histories WHERE id = ANY($1)', [ids]);
  }

  /** Histories that fork from this one and have no base backup of their own yet: they start from its. */
  async dependents(id: string): Promise<History[]> {
    const { rows } = await this.catalog.query(
      `SELECT ${HISTORY_COLUMNS} FROM histories h WHERE ancestor_id = $1 AND NOT EXISTS (SELECT 1 FROM base_backups b WHERE b.history_id = h.id)`, [id]);
    return rows.map(toHistory);
  }
}
