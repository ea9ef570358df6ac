import fs from 'node:fs';
import path from 'node:path';
import type { PgInstall } from '../../pg/install.ts';
import { type OsUser, chownTree, makeOwnedDir } from '../../pg/os-user.ts';
import type { SealedStore } from '../../storage/sealed-store.ts';
import { type Seed, readManifest, restoreTree } from '../../storage/snapshots.ts';
import type { PointInTime } from '../point-in-time.ts';
import { checkpointPosition, checkpointTimeline } from './compute-admin.ts';
import { copyTree, stripRunFiles } from './files.ts';
import type { BaseBackup, Histories, History } from './histories.ts';
import { type RecoveryPlan, planRecovery } from './history-plan.ts';
import { WAL_FETCHED, recoverToTarget } from './recovery.ts';
import { SEGMENT_BYTES, WalArchive, historyFileName, segmentName, segmentStart } from './wal-archive.ts';

export interface RecoveryContext {
  histories: Histories;
  store: SealedStore;
  install: PgInstall;
  user: OsUser;
  /** The compute settings recovery runs with (memory, connections). */
  settings: Record<string, string | number>;
  socketDir: string;
  /** A template base backup's local copy, when this node has that very template. */
  localTemplate(backup: BaseBackup): string | undefined;
  /** This node's copy of a version's template and its manifest, for the files a backup shares with it. */
  templateSeed?(version: string): Promise<Seed | undefined>;
}

/** What a recovery made: a data directory on a new timeline, and the history that holds it. */
export interface Recovered {
  history: History;
}

/** Writes a base backup's files into pgdata (absent before): the node's template copy, else from the store. */
export async function restoreBase(ctx: Pick<RecoveryContext, 'store' | 'user' | 'localTemplate' | 'templateSeed'>, base: BaseBackup, pgdata: string): Promise<void> {
  const local = base.kind === 'template' ? ctx.localTemplate(base) : undefined;
  if (local) {
    await copyTree(local, pgdata);
  } else {
    const manifest = await readManifest(ctx.store, base.kind === 'template' ? 'fleet' : scopeOf(base), base.manifest);
    // A backup that shares chunks with a template is restored on top of this node's copy of it.
    const version = manifest.packs.map((p) => /^templates\/pg([^/]+)\//.exec(p.key)?.[1]).find((v) => v !== undefined);
    await restoreTree(ctx.store, manifest, pgdata, version === undefined ? undefined : await ctx.templateSeed?.(version));
  }
  stripRunFiles(pgdata);
  for (const dir of ['pg_wal', 'pg_wal/archive_status', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']) {
    fs.mkdirSync(path.join(pgdata, dir), { recursive: true, mode: 0o700 });
  }
  chownTree(pgdata, ctx.user);
}

/** A database's backups are sealed with its key; the manifest key names the database. */
const scopeOf = (b: BaseBackup) => b.manifest.split('/')[1] as `db-${string}`;

/**
 * Writes the WAL a plan replays into walDir, one file per segment as Postgres names it: each
 * history's segments from where it takes over, the bytes past its end zeroed (so replay stops
 * exactly where a history forked, never running into what its ancestor wrote afterwards), and
 * the history files of the timelines on the way.
 */
export async function fetchWal(archive: WalArchive, plan: RecoveryPlan, walDir: string): Promise<void> {
  for (const { history, from, to } of plan.wal) {
    if (history.tli > 1) {
      const file = await archive.historyFile(history.id, history.tli);
      if (file) writeWhole(path.join(walDir, historyFileName(history.tli)), file);
    }
    // Segments are read a few ahead (a store's latency, not its bandwidth, bounds one at a time) and written in order.
    const ahead: { start: bigint; seg: ReturnType<WalArchive['segment']> }[] = [];
    let next = segmentStart(from);
    const wanted = (start: bigint) => to === undefined || start < to;
    const fill = () => {
      while (ahead.length < SEGMENTS_AHEAD && wanted(next)) {
        const seg = archive.segment(history.id, segmentName(history.tli, next));
        seg.catch(() => {}); // awaited in order below; one read past the end may fail unseen
        ahead.push({ start: next, seg });
        next += BigInt(SEGMENT_BYTES);
      }
    };
    for (fill(); ahead.length > 0; fill()) {
      const { start, seg: pending } = ahead.shift()!;
      const seg = await pending;
      if (!seg) break;
      const data = seg.data;
      if (to !== undefined && to < start + BigInt(SEGMENT_BYTES)) data.fill(0, Number(to - start));
      writeWhole(path.join(walDir, segmentName(history.tli, start)), data);
      if (seg.valid < SEGMENT_BYTES) break;
    }
  }
}

/** How many WAL segments a recovery reads from the store at once. */
const SEGMENTS_AHEAD = 8;

/** A file a replay may be reading the directory for appears whole (a rename), never half written. */
function writeWhole(file: string, data: Buffer): void {
  fs.writeFileSync(`${file}.part`, data);
  fs.renameSync(`${file}.part`, file);
}

const targetNotReached = (err: unknown) => /recovery ended before configured recovery target was reached/.test(String((err as Error).message));

/**
 * Recovers a branch to `at` (undefined: the end of its history in the store) into `dir/pgdata`,
 * on a new timeline, and records the history that now holds it: forked from the history the
 * point lies in, its WAL so far (the new timeline's first segments and history file, read from
 * the recovered directory) already in the store. The caller attaches it to a branch.
 */
export async function recoverInto(ctx: RecoveryContext, chain: History[], at: PointInTime | undefined, dir: string): Promise<Recovered> {
  const databaseId = chain[0]!.databaseId;
  const archive = new WalArchive(ctx.store, databaseId);
  const plan = planRecovery(chain, await ctx.histories.backups(chain.map((h) => h.id)), at);
  const pgdata = path.join(dir, 'pgdata');
  const walDir = path.join(dir, 'restore-wal');
  makeOwnedDir(dir, ctx.user);
  makeOwnedDir(walDir, ctx.user);
  const base = () => {
    fs.rmSync(pgdata, { recursive: true, force: true });
    return restoreBase(ctx, plan.base, pgdata);
  };
  const replay = (target: PointInTime | undefined, whileFetching: boolean) => recoverToTarget({
    install: ctx.install, user: ctx.user, dir, walDir, settings: ctx.settings, socketDir: ctx.socketDir, target, timeline: plan.target.tli, whileFetching,
  });
  // The WAL comes from the store while the base backup is restored and then replayed: each segment is
  // replayed as soon as it is here. What a replay made is used only once every segment was fetched.
  const fetched = fetchWal(archive, plan, walDir).finally(() => fs.writeFileSync(path.join(walDir, WAL_FETCHED), ''));
  const replayed = base().then(() => replay(at, true));
  const [wal, first] = await Promise.allSettled([fetched, replayed]);
  if (wal.status === 'rejected') throw wal.reason;
  let result;
  if (first.status === 'fulfilled') {
    result = first.value;
  } else {
    // The store holds no commit after the point (its writer died first): the point is then the end.
    if (!at || !targetNotReached(first.reason)) throw first.reason;
    await base();
    result = await replay(undefined, false);
  }
  fs.rmSync(walDir, { recursive: true, force: true });
  const tli = checkpointTimeline(pgdata);
  const checkpoint = BigInt(checkpointPosition(pgdata));
  const historyText = fs.readFileSync(path.join(pgdata, 'pg_wal', historyFileName(tli)), 'utf8');
  const last = historyText.trim().split('\n').filter((l) => /^\d+\s/.test(l)).at(-1)!.split(/\s+/);
  const [hi, lo] = last[1]!.split('/');
  const forkLsn = (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
  const forkTime = at && 'time' in at ? at.time : result.lastCommit ?? new Date();
  const history = await ctx.histories.create({
    databaseId, tli, startLsn: segmentStart(forkLsn), endLsn: checkpoint, ancestor: { id: plan.target.id, lsn: forkLsn, time: forkTime },
  });
  // The new timeline's WAL so far (the fork's segment on, up to the shutdown checkpoint) goes to the store now.
  await archive.putHistoryFile(history.id, tli, Buffer.from(historyText));
  for (let start = segmentStart(forkLsn); start <= checkpoint; start += BigInt(SEGMENT_BYTES)) {
    const name = segmentName(tli, start);
    const file = fs.readFileSync(path.join(pgdata, 'pg_wal', name));
    if (start + BigInt(SEGMENT_BYTES) <= checkpoint) await archive.putSegment(history.id, name, file);
    else if (checkpoint > start) await archive.putPart(history.id, tli, start, file.subarray(0, Number(checkpoint - start)));
  }
  return { history };
}
