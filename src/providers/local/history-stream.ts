import type { Logger } from 'pino';
import type { History } from './histories.ts';
import type { LocalStorage } from './local-storage.ts';
import { WalArchive, segmentName, segmentStart } from './wal-archive.ts';
import { WalStreamer } from './wal-streamer.ts';

/**
 * Where streaming of a history starts: where the store's copy ends, or its first segment's start
 * when it holds none. A history no writer holds ended exactly where the catalog says; one this
 * node held when it stopped uncleanly is looked up in the store.
 */
async function streamFrom(archive: WalArchive, history: History): Promise<bigint> {
  if (history.writerNode === null) return history.endLsn > history.startLsn ? history.endLsn : segmentStart(history.startLsn);
  const end = await archive.end(history.id, history.tli, history.endLsn);
  if (end > history.endLsn || (await archive.segment(history.id, segmentName(history.tli, history.endLsn)))) return end;
  return segmentStart(history.endLsn);
}

export interface HistoryStreamOptions {
  storage: LocalStorage;
  history: History;
  socketDir: string;
  pgdata: string;
  sync: boolean;
  log: Logger;
  onUploadFailed(err: unknown): void;
  onFenced(): void;
  /** WAL reached the store. */
  onStored(): void;
}

/**
 * Streams a running compute's WAL into its history in the store, from where the store's copy ends,
 * and claims the history for this node (its writer) once the stream runs.
 */
export async function streamHistory(o: HistoryStreamOptions): Promise<WalStreamer> {
  const { storage, history } = o;
  const archive = new WalArchive(storage.store, history.databaseId);
  const streamer = new WalStreamer({
    socketDir: o.socketDir, pgdata: o.pgdata, archive, historyId: history.id, tli: history.tli, start: await streamFrom(archive, history),
    sync: o.sync, maxLagMs: storage.settings.maxLagMs, canWrite: () => storage.node.canWrite(), log: o.log,
  });
  streamer.on('error', o.onUploadFailed);
  streamer.on('fenced', o.onFenced);
  streamer.on('stored', o.onStored);
  try {
    await streamer.start();
    await storage.histories.claim(history.id, storage.node.id, storage.node.generation());
  } catch (err) {
    streamer.abort();
    throw err;
  }
  return streamer;
}
