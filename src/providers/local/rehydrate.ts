import fs from 'node:fs';
import path from 'node:path';
import type { Catalog } from '../../catalog/catalog.ts';
import { ComputeStartError } from '../../errors.ts';
import type { PgInstall } from '../../pg/install.ts';
import { type OsUser, chownTree, makeOwnedDir } from '../../pg/os-user.ts';
import type { BranchRef } from '../provider.ts';
import { formatLsn } from '../point-in-time.ts';
import { cacheHolds, readCache, writeCache } from './branch-cache.ts';
import { checkpointPosition, checkpointTimeline } from './compute-admin.ts';
import { copyTree } from './files.ts';
import type { Histories, History } from './histories.ts';
import { type RecoveryContext, recoverInto, restoreBase } from './history-recovery.ts';
import type { Templates } from './templates.ts';

export interface RehydrateContext extends Omit<RecoveryContext, 'install' | 'user' | 'socketDir' | 'settings'> {
  catalog: Catalog;
  histories: Histories;
  templates: Templates;
  nodeId: string;
}

/** The template base backup of a new database's first history: its first state costs nothing in the store. */
async function recordTemplateBase(ctx: RehydrateContext, ref: BranchRef, history: History, install: PgInstall): Promise<void> {
  const template = await ctx.templates.ensure(install);
  await ctx.catalog.query(
    `INSERT INTO base_backups (history_id, id, kind, timeline, start_lsn, end_lsn, start_time, end_time, manifest)
     SELECT $1, $2, 'template', $3, $4, $4, created_at, created_at, $5 FROM branches WHERE id = $6 ON CONFLICT DO NOTHING`,
    [history.id, `template-${install.version}`, template.tli, formatLsn(template.checkpoint), template.manifest, ref.branchId]);
}

/**
 * Makes the branch's data directory here hold its history as the store has it, and returns that
 * history. Kept files that hold it are used as they are. Otherwise: a root branch that never ran
 * starts from the fleet's template; a history that ended cleanly with a base backup at its end is
 * that backup; anything else (its writer was lost with its node, or its newest backup is older
 * than its end) is recovered from the store to its end onto a new timeline, in a new history
 * forked from it, which the branch takes over.
 */
export async function rehydrate(
  ctx: RehydrateContext, ref: BranchRef, branchDir: string, run: { install: PgInstall; user: OsUser; socketDir: string; settings: Record<string, string | number> },
): Promise<{ history: History; from: 'cache' | 'template' | 'backup' | 'recovery' }> {
  const pgdata = path.join(branchDir, 'pgdata');
  const cache = readCache(branchDir);
  let history = await ctx.histories.ofBranch(ref.branchId);
  const hasData = fs.existsSync(path.join(pgdata, 'PG_VERSION'));
  if (!history) {
    if (!hasData && !ref.root) throw new ComputeStartError(`branch "${ref.branchId}" has no history to start from`);
    if (hasData) {
      // Data from before histories were kept: its history starts where its files end.
      const at = BigInt(checkpointPosition(pgdata));
      history = await ctx.histories.create({ databaseId: ref.databaseId, tli: checkpointTimeline(pgdata), startLsn: at });
    } else {
      const template = await ctx.templates.ensure(run.install);
      history = await ctx.histories.create({ databaseId: ref.databaseId, tli: template.tli, startLsn: template.checkpoint });
      await recordTemplateBase(ctx, ref, history, run.install);
      await stage(branchDir, run.user, async (staging) => copyTree(ctx.templates.local(run.install.version)!, path.join(staging, 'pgdata')));
    }
    await ctx.histories.attach(ref.branchId, history.id);
    writeCache(branchDir, { historyId: history.id, end: history.endLsn, stoppedAt: null });
    return { history, from: hasData ? 'cache' : 'template' };
  }
  if (hasData && cacheHolds(cache, history, ctx.nodeId)) return { history, from: 'cache' };
  const newest = (await ctx.histories.backups([history.id])).at(-1);
  if (history.writerNode === null && newest && newest.endLsn === history.endLsn) {
    await stage(branchDir, run.user, (staging) => restoreBase({ ...ctx, user: run.user }, newest, path.join(staging, 'pgdata')));
    writeCache(branchDir, { historyId: history.id, end: history.endLsn, stoppedAt: null });
    return { history, from: 'backup' };
  }
  const chain = await ctx.histories.chain(history.id);
  let recovered: History | undefined;
  await stage(branchDir, run.user, async (staging) => {
    recovered = (await recoverInto({ ...ctx, ...run }, chain, undefined, staging)).history;
  });
  await ctx.histories.attach(ref.branchId, recovered!.id);
  writeCache(branchDir, { historyId: recovered!.id, end: recovered!.endLsn, stoppedAt: null });
  return { history: recovered!, from: 'recovery' };
}

/** Builds `<staging>/pgdata` beside the branch directory, then puts it in place of the branch's pgdata. */
async function stage(branchDir: string, user: OsUser, build: (staging: string) => Promise<void>): Promise<void> {
  const staging = `${branchDir}.staging`;
  fs.rmSync(staging, { recursive: true, force: true });
  makeOwnedDir(staging, user);
  try {
    await build(staging);
    chownTree(path.join(staging, 'pgdata'), user);
    fs.rmSync(path.join(branchDir, 'pgdata'), { recursive: true, force: true });
    fs.renameSync(path.join(staging, 'pgdata'), path.join(branchDir, 'pgdata'));
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}
