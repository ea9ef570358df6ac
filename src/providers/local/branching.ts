import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { makeOwnedDir } from '../../pg/os-user.ts';
import type { Branching, BranchRef, CommitStep, ProviderState } from '../provider.ts';
import type { PointInTime } from '../point-in-time.ts';
import { cacheHolds, readCache, writeCache } from './branch-cache.ts';
import { copyTree, stripRunFiles } from './files.ts';
import type { History } from './histories.ts';
import { earliestRestorable } from './history-plan.ts';
import { recoverInto, restoreBase } from './history-recovery.ts';
import type { LocalProvider } from './local-provider.ts';
import type { LocalStorage } from './local-storage.ts';
import { oneOffSocketName } from './recovery.ts';
import { pruneDatabase, pruneHistory } from './store-upkeep.ts';

export interface LocalBranchingOptions {
  /** A branch gets a new base backup once its newest is older than this. */
  backupIntervalMs: number;
  log: Logger;
}

/** What a build put in a staging directory: its pgdata, and the history that holds it. */
interface Built {
  history: History;
}

/**
 * History, branches and point-in-time restore of local computes, over the store: every branch
 * has a history there (its WAL and base backups), forked from its parent's where it was made.
 * A branch of now is its parent's data as it stands (copied here, or its newest backup when that
 * is its end); one at a moment, or of a running parent, is recovered from the store onto a new
 * timeline. The parent's files and history are only read.
 */
export class LocalBranching implements Branching {
  readonly deletesBranchesWithChildren = true;

  constructor(private readonly local: LocalProvider, private readonly storage: LocalStorage, private readonly opts: LocalBranchingOptions) {}

  private dir(ref: BranchRef): string {
    return this.local.dataDirOf(ref);
  }

  private ctx(target: BranchRef, socketDir = this.local.layout.socketDir(oneOffSocketName())) {
    return {
      ...this.storage,
      install: this.local.installFor(target),
      user: this.local.files.userOf(target),
      settings: this.local.settings(target),
      socketDir,
      ...this.storage.templates.sources,
    };
  }

  /** The branch's history; one that never ran gets it by a start and a clean stop. */
  private async historyOf(ref: BranchRef): Promise<History> {
    let history = await this.storage.histories.ofBranch(ref.branchId);
    if (!history) {
      await this.local.start(ref);
      await this.local.stop(ref);
      history = await this.storage.histories.ofBranch(ref.branchId);
    }
    return history!;
  }

  async earliest(ref: BranchRef, retentionSeconds: number): Promise<Date | undefined> {
    if (retentionSeconds === 0) return undefined;
    const windowStart = new Date(Date.now() - retentionSeconds * 1000);
    const history = await this.storage.histories.ofBranch(ref.branchId);
    // Never started: its data is the template's at any moment since it was made.
    if (!history) return windowStart;
    const chain = await this.storage.histories.chain(history.id);
    return earliestRestorable(chain, await this.storage.histories.backups(chain.map((h) => h.id)), windowStart);
  }

  /**
   * Fills `<staging>/pgdata` with source's data now, or at `at`, and returns the history that holds it.
   * Now, stopped, its history ended cleanly: its files (here, or its newest backup at that end) in a
   * history forked at that end. Otherwise (a moment, a running source): recovered from the store.
   */
  private async build(source: BranchRef, target: BranchRef, staging: string, at: PointInTime | undefined, running: boolean): Promise<Built> {
    makeOwnedDir(staging, this.local.files.userOf(target));
    let point = at;
    // A running source first marks where its history stands (a commit, stored), so that "now" and every earlier moment can be replayed.
    if (running) {
      const end = await this.local.markRunningHistoryEnd(source);
      point ??= { lsn: end.lsn };
    }
    const history = await this.historyOf(source);
    if (point === undefined && history.writerNode === null) {
      const pgdata = path.join(staging, 'pgdata');
      const newest = (await this.storage.histories.backups([history.id])).at(-1);
      // Copied while no eviction or start touches the source's files.
      const copied = await this.local.files.withFiles(source.branchId, async () => {
        if (!cacheHolds(readCache(this.dir(source)), history, this.storage.node.id) || !fs.existsSync(path.join(this.dir(source), 'pgdata', 'PG_VERSION'))) return false;
        await copyTree(path.join(this.dir(source), 'pgdata'), pgdata);
        stripRunFiles(pgdata);
        return true;
      });
      if (!copied && newest && newest.endLsn === history.endLsn) {
        await restoreBase(this.ctx(target), newest, pgdata);
      }
      if (fs.existsSync(pgdata)) {
        const forked = await this.storage.histories.create({
          databaseId: target.databaseId, tli: history.tli, startLsn: history.endLsn, ancestor: { id: history.id, lsn: history.endLsn, time: history.endTime ?? new Date() },
        });
        return { history: forked };
      }
    }
    const chain = await this.storage.histories.chain(history.id);
    return recoverInto(this.ctx(target), chain, point, staging);
  }

  /** Puts a build's pgdata into the branch's directory and records that it holds its history. */
  private place(target: BranchRef, staging: string, built: Built, into = this.dir(target)): void {
    fs.renameSync(path.join(staging, 'pgdata'), path.join(into, 'pgdata'));
    writeCache(into, { historyId: built.history.id, end: built.history.endLsn, stoppedAt: Date.now() });
  }

  async branch(source: BranchRef, child: BranchRef, at: PointInTime | undefined, running: boolean): Promise<ProviderState> {
    this.local.files.writeSpec(child);
    const staging = `${this.dir(child)}.staging`;
    const built = await this.stage(staging, () => this.build(source, child, staging, at, running));
    this.place(child, staging, built);
    fs.rmSync(staging, { recursive: true, force: true });
    await this.storage.histories.attach(child.branchId, built.history.id);
    return {};
  }

  async restore(ref: BranchRef, at: PointInTime, before: BranchRef, commit: CommitStep): Promise<void> {
    const refDir = this.dir(ref);
    const staging = `${refDir}.staging`;
    const old = await this.historyOf(ref);
    const built = await this.stage(staging, () => this.build(ref, ref, staging, at, false));
    fs.copyFileSync(path.join(refDir, 'tenant.json'), path.join(staging, 'tenant.json'));
    writeCache(staging, { historyId: built.history.id, end: built.history.endLsn, stoppedAt: Date.now() });
    await this.swap('restore', ref, { staging, moved: this.dir(before) }, async (tx) => {
      // The branch takes the recovered history; what it held until now is the `_before_` branch's.
      await this.storage.histories.attach(ref.branchId, built.history.id, tx);
      await this.storage.histories.attach(before.branchId, old.id, tx);
      await commit(tx);
    });
  }

  async reset(ref: BranchRef, parent: BranchRef, parentRunning: boolean, commit: CommitStep): Promise<void> {
    const refDir = this.dir(ref);
    const staging = `${refDir}.staging`;
    const built = await this.stage(staging, () => this.build(parent, ref, staging, undefined, parentRunning));
    fs.copyFileSync(path.join(refDir, 'tenant.json'), path.join(staging, 'tenant.json'));
    writeCache(staging, { historyId: built.history.id, end: built.history.endLsn, stoppedAt: Date.now() });
    const moved = `${refDir}.old`;
    await this.swap('reset', ref, { staging, moved }, async (tx) => {
      await this.storage.histories.attach(ref.branchId, built.history.id, tx);
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
    await this.storage.catalog.query('INSERT INTO lifecycle_ops (id, kind, branch_id, detail) VALUES ($1, $2, $3, $4)', [op.id, kind, ref.branchId, op]);
    try {
      if (fs.existsSync(refDir)) fs.renameSync(refDir, dirs.moved);
      fs.renameSync(dirs.staging, refDir);
      await this.storage.catalog.tx(async (tx) => {
        await commit(tx);
        await tx.query('DELETE FROM lifecycle_ops WHERE id = $1', [op.id]);
      });
    } catch (err) {
      await this.undo(op).catch((e) => this.opts.log.error({ err: String(e), op }, 'could not undo an interrupted restore'));
      throw err;
    }
  }

  private async undo(op: { id: string; refDir: string; staging: string; moved: string }): Promise<void> {
    if (fs.existsSync(op.moved)) {
      if (fs.existsSync(op.refDir)) fs.rmSync(op.refDir, { recursive: true, force: true });
      fs.renameSync(op.moved, op.refDir);
    }
    fs.rmSync(op.staging, { recursive: true, force: true });
    await this.storage.catalog.query('DELETE FROM lifecycle_ops WHERE id = $1', [op.id]);
  }

  async recoverInterrupted(): Promise<void> {
    const { rows } = await this.storage.catalog.query<{ detail: { id: string; refDir: string; staging: string; moved: string } }>('SELECT detail FROM lifecycle_ops');
    for (const { detail } of rows) {
      this.opts.log.warn({ op: detail }, 'putting back the branch of an interrupted restore or reset');
      await this.undo(detail);
    }
    // Staged copies nothing refers to any more (a crash while one was made, or after a reset committed).
    const root = this.local.layout.dataRoot;
    if (!fs.existsSync(root)) return;
    for (const region of fs.readdirSync(root)) {
      for (const db of fs.readdirSync(path.join(root, region))) {
        for (const entry of fs.readdirSync(path.join(root, region, db))) {
          if (/\.(staging|old)$/.test(entry)) fs.rmSync(path.join(root, region, db, entry), { recursive: true, force: true });
        }
      }
    }
  }

  /** Databases whose store may hold objects nothing refers to since the last pass (a backup or history went). */
  private readonly dirty = new Set<string>();

  async prune(ref: BranchRef, retentionSeconds: number): Promise<void> {
    const archive = this.local.archiveOf(ref.databaseId);
    const history = await this.storage.histories.ofBranch(ref.branchId);
    if (history && (await pruneHistory(this.storage, archive, history, retentionSeconds)) > 0) this.dirty.add(ref.databaseId);
    // Once per database (on its root branch): histories no branch needs, and packs no backup uses.
    if (ref.root && (await pruneDatabase(this.storage, archive, ref.databaseId, retentionSeconds, this.dirty.delete(ref.databaseId))) > 0) {
      this.dirty.add(ref.databaseId);
    }
  }

  /** An online base backup of a running compute whose history has none of its own, or whose newest is older than the interval. */
  async backupIfDue(ref: BranchRef): Promise<void> {
    const socketDir = this.local.socketDirOf(ref);
    const history = this.local.runningHistory(ref);
    if (!socketDir || !history) return;
    const newest = (await this.storage.histories.backups([history.id])).at(-1);
    if (newest && newest.kind !== 'template' && Date.now() - newest.endTime.getTime() < this.opts.backupIntervalMs) return;
    await this.storage.backups.online(history, socketDir, path.join(this.dir(ref), 'pgdata'), (lsn) => this.local.stored(ref, lsn));
  }
}
