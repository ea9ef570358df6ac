import type { Logger } from 'pino';
import { StorageWaitError } from '../../errors.ts';
import { SOCKET_PORT } from '../../pg/server.ts';
import type { StorageSettings } from '../../storage/storage-config.ts';
import { parseLsn } from '../point-in-time.ts';
import { asAdmin } from './compute-admin.ts';
import type { WalStreamer } from './wal-streamer.ts';

/** A running compute as the watch sees it. */
export interface Watched {
  branchId: string;
  socketDir: string;
  streamer: WalStreamer;
  /** Its database's own choice. */
  durability: 'async' | 'sync';
  /** Its WAL waiting on this node passed the bound: its commits wait for the store until it catches up. */
  backlogged: boolean;
}

export interface StoreWatchOptions {
  settings: StorageSettings;
  /** Makes the compute's commits wait for the store, or no longer (a reload). */
  setCommitsWait(w: Watched, wait: boolean): Promise<void>;
  /** These backends' commits waited too long: their sessions end with the reason, then the backends. */
  endStuck(w: Watched, backendPids: number[], reason: StorageWaitError): void;
  log: Logger;
}

/**
 * What happens to a running compute while the store is slow or down. Reads go on. An async
 * compute's WAL waits on this node's disk (its replication slot keeps it) up to
 * PGFLEET_STORAGE_MAX_BACKLOG; past it its commits wait for the store, as a sync compute's always
 * do. A commit that waited PGFLEET_STORAGE_SYNC_TIMEOUT fails: its session ends with 58030 and
 * it was never acknowledged. When the store takes the WAL again, everything resumes on its own.
 * Healthy computes cost nothing here: the compute is asked only while its uploads fail.
 */
export class StoreWatch {
  constructor(private readonly opts: StoreWatchOptions) {}

  async check(w: Watched): Promise<void> {
    const { streamer } = w;
    // Failing uploads, or one that hangs: a store that does not answer fails only after its request timeout.
    const troubled = streamer.failing !== undefined || w.backlogged || streamer.uploadingMs > 1000;
    if (!troubled) return;
    const { maxBacklogBytes, syncTimeoutMs } = this.opts.settings;
    const { flushed, stuck } = await asAdmin(w.socketDir, SOCKET_PORT, async (c) => {
      const { rows: [f] } = await c.query<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn');
      const { rows } = await c.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND clock_timestamp() - query_start > make_interval(secs => $1)`, [syncTimeoutMs / 1000]);
      return { flushed: parseLsn(f!.lsn), stuck: rows.map((r) => r.pid) };
    });
    const backlog = Number(flushed - streamer.stored);
    if (!w.backlogged && w.durability === 'async' && backlog > maxBacklogBytes) {
      this.opts.log.error({ branch: w.branchId, backlog_bytes: backlog, err: String(streamer.failing) },
        'the store has not taken this compute\'s WAL, which passed PGFLEET_STORAGE_MAX_BACKLOG on this node: its commits wait for the store now');
      await this.opts.setCommitsWait(w, true);
      w.backlogged = true;
    } else if (w.backlogged && streamer.failing === undefined && backlog < maxBacklogBytes / 2) {
      w.backlogged = false;
      this.opts.log.info({ branch: w.branchId, backlog_bytes: backlog }, 'the store took the waiting WAL: commits no longer wait for it');
      await this.opts.setCommitsWait(w, w.durability === 'sync');
    }
    if (stuck.length) {
      const reason = new StorageWaitError(`terminating connection: the commit was not acknowledged: the storage did not take its WAL within ${syncTimeoutMs / 1000} s `
        + `(${streamer.failing?.message ?? 'it is behind'}); reconnect and check whether the transaction committed`);
      this.opts.log.error({ branch: w.branchId, backends: stuck }, 'commits waited too long for the store: their sessions end');
      this.opts.endStuck(w, stuck, reason);
    }
  }
}
