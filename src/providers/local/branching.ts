import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog.ts';
import { BadRequestError } from '../../errors.ts';
import { chownTree, makeOwnedDir } from '../../pg/os-user.ts';
import { WAL_SEGMENT_MB } from '../../pg/server.ts';
import { type HistoryEnd, checkpointPosition, checkpointTimeline } from './compute-admin.ts';
import { ARCHIVE_DIR, BACKUPS_DIR, type LocalHistoryHooks, type LocalProvider } from './local-provider.ts';
import type { BranchRef, ProviderState } from '../provider.ts';
import { type BaseBackup, backupFor, baseBackups } from './base-backups.ts';
import type { Branching, CommitStep } from '../branching.ts';
import { copyTree, linkArchive, linkTree, stripRunFiles, treeBytes } from './files.ts';
import { oneOffSocketName, onlineBackup, recoverToTarget } from './recovery.ts';
import { type PointInTime, describePoint } from '../point-in-time.ts';
import { formatLsn, parseLsn } from '../point-in-time.ts';
import { isSegment, segmentPosition, segmentPositionOf } from './wal.ts';

const SEGMENT_BYTES = WAL_SEGMENT_MB * 1024 * 1024;
/** Archived segments younger than this are kept even with no history (a branch may be linking them). */
const ARCHIVE_GRACE_MS = 5 * 60_000;

export interface LocalBranchingOptions {
  /** A branch gets a new base backup once its newest is older than this. */
  backupIntervalMs: number;
  /** The history retention of a branch's database (seconds). */
  retentionOf(ref: BranchRef): Promise<number>;
  log: Logger;
}

const lsnText = (position: number | bigint) => formatLsn(BigInt(position));
const isAtOrAfter = (at: PointInTime, end: HistoryEnd) => ('time' in at ? at.time >= end.time : parseLsn(at.lsn) >= parseLsn(end.lsn));
const exists = (p: string) => fs.existsSync(p);
/** The id of a template base backup: this, then the Postgres version of the template. */
const TEMPLATE_BACKUP = 'template-';

interface Built {
  /** The base backups the new directory holds (linked), to record for its branch. */
  backups: BaseBackup[];
}

/**
 * History, branches and point-in-time restore of local computes. Each branch directory holds
 * pgdata, archive/ (its WAL, archived by its compute) and backups/ (base backups). A branch
 * made from another gets hard links of the history it descends from, so every branch can be
 * restored alone and deleting one never breaks another.
 */
export class LocalBranching implements Branching, LocalHistoryHooks {
  readonly deletesBranchesWithChildren = true;

  constructor(private readonly local: LocalProvider, private readonly catalog: Catalog, private readonly opts: LocalBranchingOptions) {}

  private dir(ref: BranchRef): string {
    return this.local.dataDirOf(ref);
  }

  /** A database's branches all belong to its OS user. */
  private userOf(ref: BranchRef) {
    return this.local.userOf(ref);
  }

  /**
   * Where a base backup's files are. A template backup is the template of the Postgres version the
   * branch was made with (`template-17.10`), kept after an upgrade of the binaries made a newer
   * one; rows from before versions were recorded (`template`) name the major's current template.
   */
  private backupDir(ref: BranchRef, b: BaseBackup): string {
    if (b.kind !== 'template') return path.join(this.dir(ref), BACKUPS_DIR, b.id);
    const version = b.id.startsWith(TEMPLATE_BACKUP) ? b.id.slice(TEMPLATE_BACKUP.length) : undefined;
    const pgdata = version ? path.join(this.local.layout.templateDir(version), 'pgdata') : this.local.templatePgdata(ref.pgVersion);
    if (!exists(pgdata)) throw new Error(`the template of Postgres ${version ?? ref.pgVersion} that this branch's history starts from is gone (${pgdata})`);
    return pgdata;
  }

  // --- hooks of the local provider -------------------------------------------------------

  /** A new database's first state is the shared template of its Postgres version: a base backup that costs nothing. */
  async materialized(ref: BranchRef, templatePgdata: string): Promise<void> {
    const lsn = lsnText(checkpointPosition(templatePgdata));
    await this.catalog.query(
      `INSERT INTO base_backups (branch_id, id, kind, timeline, start_lsn, end_lsn, start_time, end_time)
       SELECT id, $4, 'template', $2, $3, $3, created_at, created_at FROM branches WHERE id = $1
       ON CONFLICT DO NOTHING`,
      [ref.branchId, checkpointTimeline(templatePgdata), lsn, `${TEMPLATE_BACKUP}${this.local.postgresVersion(ref.pgVersion)}`],
    );
  }

  /** A cleanly stopped data directory is a consistent snapshot: copied as a base backup when one is due. */
  async stopped(ref: BranchRef, end: HistoryEnd): Promise<void> {
    if (await this.backupDue(ref)) await this.copyBackup(ref, end);
  }

  /** Copies the data directory of a cleanly stopped branch as a base backup ending at `end`. */
  async copyBackup(ref: BranchRef, end: HistoryEnd): Promise<void> {
    const pgdata = path.join(this.dir(ref), 'pgdata');
    const id = `copy-${end.time.getTime()}`;
    const dest = path.join(this.dir(ref), BACKUPS_DIR, id);
    await this.writeBackup(ref, dest, async (tmp) => {
      await copyTree(pgdata, tmp);
      stripRunFiles(tmp);
    });
    const lsn = lsnText(checkpointPosition(pgdata));
    await baseBackups.add(this.catalog, ref.branchId, {
      id, kind: 'copy', timeline: checkpointTimeline(pgdata), startLsn: lsn, endLsn: lsn, startTime: end.time, endTime: end.time,
      bytes: await treeBytes(dest),
    });
  }

  private async backupDue(ref: BranchRef): Promise<boolean> {
    if ((await this.opts.retentionOf(ref)) === 0) return false;
    const { rows } = await this.catalog.query<{ newest: Date | null; exists: boolean }>(
      'SELECT (SELECT max(end_time) FROM base_backups WHERE branch_id = $1) AS newest, EXISTS (SELECT 1 FROM branches WHERE id = $1) AS exists',
      [ref.branchId]);
    const { newest, exists: known } = rows[0]!;
    return known && (!newest || Date.now() - newest.getTime() >= this.opts.backupIntervalMs);
  }

  /** Fills dest through a temporary directory renamed into place, so a half-made backup never counts. */
  private async writeBackup(ref: BranchRef, dest: string, fill: (tmp: string) => Promise<void>): Promise<void> {
    const tmp = `${dest}.tmp`;
    makeOwnedDir(path.dirname(dest), this.userOf(ref));
    fs.rmSync(tmp, { recursive: true, force: true });
    await fill(tmp);
    fs.renameSync(tmp, dest);
  }

  async backupIfDue(ref: BranchRef): Promise<void> {
    const socketDir = this.local.socketDirOf(ref);
    if (!socketDir || !(await this.backupDue(ref))) return;
    const id = `online-${Date.now()}`;
    const dest = path.join(this.dir(ref), BACKUPS_DIR, id);
    let result: Awaited<ReturnType<typeof onlineBackup>> | undefined;
    await this.writeBackup(ref, dest, async (tmp) => {
      result = await onlineBackup(socketDir, path.join(this.dir(ref), 'pgdata'), tmp, this.userOf(ref));
    });
    await baseBackups.add(this.catalog, ref.branchId, { id, kind: 'online', ...result!, bytes: await treeBytes(dest) });
  }

  // --- the history window ------------------------------------------------------------------

  async earliest(ref: BranchRef, retentionSeconds: number): Promise<Date | undefined> {
    if (retentionSeconds === 0) return undefined;
    const backups = await baseBackups.list(this.catalog, ref.branchId);
    const windowStart = Date.now() - retentionSeconds * 1000;
    // Never started: its data is the template's at any moment since it was made.
    if (backups.length === 0) return exists(path.join(this.dir(ref), 'pgdata')) ? undefined : new Date(windowStart);
    return new Date(Math.max(backups[0]!.endTime.getTime(), windowStart));
  }

  async prune(ref: BranchRef, retentionSeconds: number): Promise<void> {
    const cutoff = Date.now() - retentionSeconds * 1000;
    const backups = await baseBackups.list(this.catalog, ref.branchId);
    // Keep the backups inside the window and the newest one before it (the window's first base).
    const firstInside = backups.findIndex((b) => b.endTime.getTime() >= cutoff);
    const keepFrom = retentionSeconds === 0 ? backups.length : firstInside === -1 ? backups.length - 1 : Math.max(0, firstInside - 1);
    const dropped = backups.slice(0, Math.max(0, keepFrom));
    for (const b of dropped) {
      await baseBackups.remove(this.catalog, ref.branchId, b.id);
      if (b.kind !== 'template') fs.rmSync(this.backupDir(ref, b), { recursive: true, force: true });
    }
    const kept = backups.slice(dropped.length);
    const archive = path.join(this.dir(ref), ARCHIVE_DIR);
    if (!exists(archive)) return;
    const from = kept[0] ? segmentPositionOf(kept[0].startLsn, SEGMENT_BYTES) : undefined;
    for (const name of fs.readdirSync(archive)) {
      if (!isSegment(name)) continue;
      const file = path.join(archive, name);
      if (from !== undefined ? segmentPosition(name) >= from : Date.now() - fs.statSync(file).mtimeMs < ARCHIVE_GRACE_MS) continue;
      fs.rmSync(file, { force: true });
    }
  }

  // --- branches ----------------------------------------------------------------------------

  /** Where the source's history ends now: marked live when it runs; after a crash, a start and clean stop settle it. */
  private async historyEnd(source: BranchRef, running: boolean): Promise<HistoryEnd | undefined> {
    if (running) return this.local.markRunningHistoryEnd(source);
    const end = this.local.historyEnd(source);
    if (end || !exists(path.join(this.dir(source), 'pgdata', 'PG_VERSION'))) return end;
    await this.local.start(source);
    await this.local.stop(source);
    return this.local.historyEnd(source);
  }

  /**
   * Fills `dir` with source's data now, or at `at`, and links the history it descends from.
   * Now, stopped: a copy of its data directory. Now, running: an online base backup replayed to
   * its end. At a point: the newest base backup before it, and the archived WAL replayed to it.
   */
  private async build(source: BranchRef, target: BranchRef, dir: string, at: PointInTime | undefined, running: boolean): Promise<Built> {
    const srcDir = this.dir(source);
    const user = this.userOf(target);
    for (const d of [dir, path.join(dir, ARCHIVE_DIR), path.join(dir, BACKUPS_DIR)]) makeOwnedDir(d, user);
    const end = at ? await this.historyEnd(source, running) : undefined;
    const all = await baseBackups.list(this.catalog, source.branchId);
    const pgdata = path.join(dir, 'pgdata');
    const recovery = (point: PointInTime | undefined) => recoverToTarget({
      install: this.local.installFor(target), user, dir, settings: this.local.settings(target, path.join(dir, ARCHIVE_DIR)),
      socketDir: this.local.layout.socketDir(oneOffSocketName()), target: point,
    });
    let backups: BaseBackup[];
    if (!at || !end || isAtOrAfter(at, end)) {
      if (running) {
        const socketDir = this.local.socketDirOf(source);
        if (!socketDir) throw new Error(`the compute of ${source.branchId} stopped during the copy`);
        const result = await onlineBackup(socketDir, path.join(srcDir, 'pgdata'), pgdata, user);
        linkArchive(path.join(srcDir, ARCHIVE_DIR), path.join(dir, ARCHIVE_DIR), result.endSegment);
        await recovery(undefined);
      } else {
        await copyTree(await this.local.materialize(source), pgdata);
        stripRunFiles(pgdata);
        linkArchive(path.join(srcDir, ARCHIVE_DIR), path.join(dir, ARCHIVE_DIR));
      }
      backups = all;
    } else {
      const base = backupFor(all, at);
      if (!base) throw new BadRequestError(`at: no base backup precedes ${describePoint(at)}`);
      await copyTree(this.backupDir(source, base), pgdata);
      chownTree(pgdata, user); // the template's files are the template user's
      linkArchive(path.join(srcDir, ARCHIVE_DIR), path.join(dir, ARCHIVE_DIR));
      await recovery(at);
      backups = all.filter((b) => ('time' in at ? b.endTime <= at.time : parseLsn(b.endLsn) <= parseLsn(at.lsn)));
    }
    for (const b of backups) if (b.kind !== 'template') await linkTree(this.backupDir(source, b), path.join(dir, BACKUPS_DIR, b.id));
    return { backups };
  }

  async branch(source: BranchRef, child: BranchRef, at: PointInTime | undefined, running: boolean): Promise<ProviderState> {
    await this.local.create(child);
    const { backups } = await this.build(source, child, this.dir(child), at, running);
    await baseBackups.replace(this.catalog, child.branchId, backups);
    return {};
  }

  async restore(ref: BranchRef, at: PointInTime, before: BranchRef, commit: CommitStep): Promise<void> {
    const refDir = this.dir(ref);
    const staging = `${refDir}.staging`;
    const { backups } = await this.stage(staging, () => this.build(ref, ref, staging, at, false));
    fs.copyFileSync(path.join(refDir, 'tenant.json'), path.join(staging, 'tenant.json'));
    await this.swap('restore', ref, { staging, moved: this.dir(before) }, async (tx) => {
      await tx.query('UPDATE base_backups SET branch_id = $2 WHERE branch_id = $1', [ref.branchId, before.branchId]);
      for (const b of backups) await baseBackups.add(tx, ref.branchId, b);
      await commit(tx);
    });
  }

  async reset(ref: BranchRef, parent: BranchRef, parentRunning: boolean, commit: CommitStep): Promise<void> {
    const refDir = this.dir(ref);
    const staging = `${refDir}.staging`;
    const { backups } = await this.stage(staging, () => this.build(parent, ref, staging, undefined, parentRunning));
    fs.copyFileSync(path.join(refDir, 'tenant.json'), path.join(staging, 'tenant.json'));
    const moved = `${refDir}.old`;
    await this.swap('reset', ref, { staging, moved }, async (tx) => {
      await baseBackups.replace(tx, ref.branchId, backups);
      await commit(tx);
    });
    fs.rmSync(moved, { recursive: true, force: true });
  }

  /** Builds into a fresh staging directory, removed again when the build fails. */
  private async stage<T>(staging: string, build: () => Promise<T>): Promise<T> {
    fs.rmSync(staging, { recursive: true, force: true });
    try {
      return await build();
    } catch (err) {
      fs.rmSync(staging, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * The crash-safe swap: the plan is recorded, the branch directory moves aside and the staged one
   * takes its place, then one catalog transaction makes it true and forgets the plan. A restart
   * finding the plan puts the old directory back (recoverInterrupted).
   */
  private async swap(kind: 'restore' | 'reset', ref: BranchRef, dirs: { staging: string; moved: string }, commit: CommitStep): Promise<void> {
    const refDir = this.dir(ref);
    const op = { id: `op-${crypto.randomBytes(8).toString('hex')}`, refDir, ...dirs };
    await this.catalog.query('INSERT INTO lifecycle_ops (id, kind, branch_id, detail) VALUES ($1, $2, $3, $4)', [op.id, kind, ref.branchId, op]);
    try {
      fs.renameSync(refDir, dirs.moved);
      fs.renameSync(dirs.staging, refDir);
      await this.catalog.tx(async (tx) => {
        await commit(tx);
        await tx.query('DELETE FROM lifecycle_ops WHERE id = $1', [op.id]);
      });
    } catch (err) {
      await this.undo(op).catch((e) => this.opts.log.error({ err: String(e), op }, 'could not undo an interrupted restore'));
      throw err;
    }
  }

  private async undo(op: { id: string; refDir: string; staging: string; moved: string }): Promise<void> {
    if (exists(op.moved)) {
      if (exists(op.refDir)) fs.rmSync(op.refDir, { recursive: true, force: true });
      fs.renameSync(op.moved, op.refDir);
    }
    fs.rmSync(op.staging, { recursive: true, force: true });
    await this.catalog.query('DELETE FROM lifecycle_ops WHERE id = $1', [op.id]);
  }

  async recoverInterrupted(): Promise<void> {
    const { rows } = await this.catalog.query<{ detail: { id: string; refDir: string; staging: string; moved: string } }>('SELECT detail FROM lifecycle_ops');
    for (const { detail } of rows) {
      this.opts.log.warn({ op: detail }, 'putting back the branch of an interrupted restore or reset');
      await this.undo(detail);
    }
    // Staged copies nothing refers to any more (a crash while one was made, or after a reset committed).
    const root = this.local.layout.dataRoot;
    if (!exists(root)) return;
    for (const region of fs.readdirSync(root)) {
      for (const db of fs.readdirSync(path.join(root, region))) {
        for (const entry of fs.readdirSync(path.join(root, region, db))) {
          if (/\.(staging|old)$/.test(entry)) fs.rmSync(path.join(root, region, db, entry), { recursive: true, force: true });
        }
      }
    }
  }
}
