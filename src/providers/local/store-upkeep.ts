import { storeKeys } from '../../storage/keys.ts';
import { packKeys, readManifest } from '../../storage/snapshots.ts';
import type { BaseBackup, History } from './histories.ts';
import type { LocalStorage } from './local-storage.ts';
import type { WalArchive } from './wal-archive.ts';

/** Objects younger than this are never removed as unused: a backup or history may be in the making. */
const GRACE_MS = 60 * 60_000;

/**
 * Drops what a history keeps beyond its retention: base backups older than the window but the
 * newest one before it (the window's starting point) and the newest of all (the current state's
 * base), those a history forked from it still starts from, and the WAL before the oldest kept
 * backup. Returns how many backups went.
 */
export async function pruneHistory(storage: LocalStorage, archive: WalArchive, history: History, retentionSeconds: number): Promise<number> {
  const backups = await storage.histories.backups([history.id]);
  if (backups.length === 0) return 0;
  const keep = new Set<BaseBackup>([backups.at(-1)!]);
  if (retentionSeconds > 0) {
    const cutoff = Date.now() - retentionSeconds * 1000;
    const firstInside = backups.findIndex((b) => b.endTime.getTime() >= cutoff);
    const keepFrom = firstInside === -1 ? backups.length - 1 : Math.max(0, firstInside - 1);
    for (const b of backups.slice(keepFrom)) keep.add(b);
  }
  for (const dependent of await storage.histories.dependents(history.id)) {
    const base = backups.filter((b) => dependent.ancestorLsn !== null && b.endLsn <= dependent.ancestorLsn).at(-1);
    if (base) keep.add(base);
  }
  const dropped = backups.filter((b) => !keep.has(b));
  for (const b of dropped) {
    await storage.histories.removeBackup(history.id, b.id);
    if (b.kind !== 'template') await storage.store.store.delete([b.manifest]);
  }
  const from = [...keep].reduce((min, b) => (b.startLsn < min ? b.startLsn : min), keep.values().next().value!.startLsn);
  await archive.pruneBefore(history.id, from);
  return dropped.length;
}

/**
 * The database-wide part: histories no branch needs any more (a reset's old one, a deleted
 * branch's with no descendant) go with their WAL and backups; histories that only descendants
 * need are pruned like any; and, when something went (`sweep`), packs that no backup uses.
 * Returns how many objects or rows went.
 */
export async function pruneDatabase(storage: LocalStorage, archive: WalArchive, databaseId: string, retentionSeconds: number, sweep: boolean): Promise<number> {
  const inUse = await storage.histories.inUse(databaseId);
  const all = await storage.histories.ofDatabase(databaseId);
  const { rows } = await storage.catalog.query<{ history_id: string }>('SELECT history_id FROM branches WHERE database_id = $1 AND history_id IS NOT NULL', [databaseId]);
  const attached = new Set(rows.map((r) => r.history_id));
  const unused = all.filter((h) => !inUse.has(h.id) && Date.now() - h.createdAt.getTime() > GRACE_MS);
  let removed = 0;
  for (const h of unused) {
    const keys: string[] = [];
    for await (const o of archive.list(h.id)) keys.push(o.key);
    for (const b of await storage.histories.backups([h.id])) if (b.kind !== 'template') keys.push(b.manifest);
    await storage.store.store.delete(keys);
    removed += keys.length;
  }
  await storage.histories.remove(unused.map((h) => h.id));
  removed += unused.length;
  for (const h of all.filter((h) => inUse.has(h.id) && !attached.has(h.id))) removed += await pruneHistory(storage, archive, h, retentionSeconds);
  if (sweep || removed > 0) removed += await sweepPacks(storage, databaseId);
  return removed;
}

/** Removes packs of the database that no remaining backup refers to (and that are older than the grace). */
async function sweepPacks(storage: LocalStorage, databaseId: string): Promise<number> {
  const used = new Set<string>();
  const backups = await storage.histories.backups((await storage.histories.ofDatabase(databaseId)).map((h) => h.id));
  for (const b of backups.filter((b) => b.kind !== 'template')) {
    for (const key of packKeys(await readManifest(storage.store, databaseId as `db-${string}`, b.manifest))) used.add(key);
  }
  const doomed: string[] = [];
  for await (const o of storage.store.store.list(storeKeys.packs(databaseId))) {
    if (!used.has(o.key) && Date.now() - o.modified.getTime() > GRACE_MS) doomed.push(o.key);
  }
  await storage.store.store.delete(doomed);
  return doomed.length;
}
