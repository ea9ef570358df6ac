import fs from 'node:fs';
import path from 'node:path';
import type { History } from './histories.ts';
import { formatLsn, parseLsn } from '../point-in-time.ts';

/**
 * A branch's files on this node are a cache of its history in the store. `cache.json` beside
 * pgdata says which history they hold, and where it ended when the compute last stopped cleanly
 * (null while it runs, or after it died: then only this node, its writer, knows more).
 */
const CACHE_FILE = 'cache.json';

export interface CacheState {
  historyId: string;
  end: bigint | null;
  /** When the compute last stopped here (for eviction), ms since the epoch. */
  stoppedAt: number | null;
}

export function readCache(branchDir: string): CacheState | undefined {
  try {
    const raw = JSON.parse(fs.readFileSync(path.join(branchDir, CACHE_FILE), 'utf8'));
    return { historyId: raw.historyId, end: raw.end === null ? null : parseLsn(raw.end), stoppedAt: raw.stoppedAt ?? null };
  } catch {
    return undefined;
  }
}

export function writeCache(branchDir: string, state: CacheState): void {
  const file = path.join(branchDir, CACHE_FILE);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify({ historyId: state.historyId, end: state.end === null ? null : formatLsn(state.end), stoppedAt: state.stoppedAt }));
  fs.renameSync(`${file}.tmp`, file);
}

/**
 * Whether the files here hold the history as the store has it: the same history, and either this
 * node writes it (it may hold more than the store: its compute's WAL not yet uploaded) or it ended
 * cleanly where these files end.
 */
export function cacheHolds(state: CacheState | undefined, history: History, nodeId: string): boolean {
  if (!state || state.historyId !== history.id) return false;
  if (history.writerNode !== null) return history.writerNode === nodeId;
  return state.end !== null && state.end === history.endLsn;
}
