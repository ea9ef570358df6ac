import { storeKeys } from '../../storage/keys.ts';
import type { SealedStore } from '../../storage/sealed-store.ts';
import { type ChunkLocation, chunkLocations, readManifest, snapshotTree } from '../../storage/snapshots.ts';
import { parseLsn } from '../point-in-time.ts';
import { asAdmin, checkpointPosition, checkpointTimeline } from './compute-admin.ts';
import type { BaseBackup, Histories, History } from './histories.ts';
import { SOCKET_PORT } from '../../pg/server.ts';

/** Directories whose contents a base backup leaves out (Postgres's own list for base backups). */
const TRANSIENT = ['pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans'];
const RUN_FILES = new Set(['postmaster.pid', 'postmaster.opts']);

const skipOf = (withWal: boolean) => (rel: string): boolean =>
  RUN_FILES.has(rel) || TRANSIENT.some((d) => rel.startsWith(`${d}/`)) || (!withWal && rel.startsWith('pg_wal/'));

/**
 * Base backups of local computes, taken into the store: a data directory stored as chunks, only
 * those the store does not hold already (an unchanged file of an earlier backup, or of the
 * template, costs nothing), and recorded for its history in the catalog.
 */
export class BaseBackups {
  constructor(private readonly store: SealedStore, private readonly histories: Histories) {}

  /**
   * Chunks the store holds already that this data directory likely shares: those of the newest
   * backup of the history and of each history it forked from (a branch or a restore starts as a
   * copy of its ancestor's data, so its first backup uploads only what changed since).
   */
  private async known(history: History): Promise<Map<string, ChunkLocation>> {
    const known = new Map<string, ChunkLocation>();
    const chain = await this.histories.chain(history.id);
    const backups = await this.histories.backups(chain.map((h) => h.id));
    for (const h of chain) {
      // A copy of another database (a partner template's) shares no chunk it can use: those are sealed with that database's key.
      if (h.databaseId !== history.databaseId) break;
      const newest = backups.filter((b) => b.historyId === h.id).at(-1);
      if (!newest) continue;
      const scope = newest.kind === 'template' ? 'fleet' : history.databaseId as `db-${string}`;
      for (const [id, at] of chunkLocations(await readManifest(this.store, scope, newest.manifest))) if (!known.has(id)) known.set(id, at);
      if (newest.kind !== 'template') break; // the nearest real backup is enough; a template only seeds a young history
    }
    return known;
  }

  /**
   * A cleanly stopped data directory, which is its own consistent state: it starts at its shutdown
   * checkpoint and ends where its history in the store ends (`end.lsn`, that checkpoint record's end).
   */
  async copy(history: History, pgdata: string, end: { time: Date; lsn: bigint }): Promise<BaseBackup> {
    const id = `copy-${end.time.getTime()}`;
    const manifest = storeKeys.backup(history.databaseId, history.id, id);
    const { bytes } = await snapshotTree(this.store, {
      dir: pgdata, scope: history.databaseId as `db-${string}`, manifestKey: manifest, packPrefix: storeKeys.packs(history.databaseId),
      known: await this.known(history), skip: skipOf(true),
    });
    const backup: BaseBackup = {
      historyId: history.id, id, kind: 'copy', tli: checkpointTimeline(pgdata), startLsn: BigInt(checkpointPosition(pgdata)), endLsn: end.lsn,
      startTime: end.time, endTime: end.time, bytes, manifest,
    };
    await this.histories.addBackup(backup);
    return backup;
  }

  /**
   * An online backup with the low-level API: pg_backup_start, the data directory stored while the
   * compute runs (files the server removes meanwhile are left out, as pg_basebackup does),
   * pg_backup_stop, whose backup_label joins the files; recorded once the WAL it needs is stored.
   */
  async online(history: History, socketDir: string, pgdata: string, stored: (lsn: bigint) => Promise<void>): Promise<BaseBackup> {
    const id = `online-${Date.now()}`;
    const manifest = storeKeys.backup(history.databaseId, history.id, id);
    const known = await this.known(history);
    return asAdmin(socketDir, SOCKET_PORT, async (client) => {
      const startTime = new Date();
      const { rows: [start] } = await client.query<{ lsn: string }>(`SELECT pg_backup_start('pgfleet', true)::text AS lsn`);
      let stop: { lsn: string; labelfile: string } | undefined;
      let bytes: number;
      try {
        ({ bytes } = await snapshotTree(this.store, {
          dir: pgdata, scope: history.databaseId as `db-${string}`, manifestKey: manifest, packPrefix: storeKeys.packs(history.databaseId),
          known, skip: skipOf(false),
          extra: async () => {
            const { rows } = await client.query<{ lsn: string; labelfile: string }>('SELECT lsn::text, labelfile FROM pg_backup_stop(false)');
            stop = rows[0]!;
            return [{ path: 'backup_label', mode: 0o600, content: Buffer.from(stop.labelfile) }];
          },
        }));
      } catch (err) {
        if (!stop) await client.query('SELECT pg_backup_stop(false)').catch(() => {});
        throw err;
      }
      await stored(parseLsn(stop!.lsn));
      const backup: BaseBackup = {
        historyId: history.id, id, kind: 'online', tli: Number(/START TIMELINE: (\d+)/.exec(stop!.labelfile)?.[1] ?? history.tli),
        startLsn: parseLsn(start!.lsn), endLsn: parseLsn(stop!.lsn), startTime, endTime: new Date(), bytes, manifest,
      };
      await this.histories.addBackup(backup);
      return backup;
    });
  }
}
