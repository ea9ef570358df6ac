import { storeKeys } from '../../storage/keys.ts';
import type { SealedStore } from '../../storage/sealed-store.ts';

/** How long a database's listed size is used before the store is listed again (it changes at stops and upkeep, which forget it). */
const LISTED_FOR_MS = 300_000;
const RELISTED_AFTER_CHANGE_MS = 10_000;

/** What each database holds in the store (the storage_bytes meter), and the removal of a whole database. */
export class StoreBytes {
  private readonly listed = new Map<string, { bytes: number; at: number; stale: boolean }>();

  constructor(private readonly store: SealedStore) {}

  async of(databaseId: string): Promise<number> {
    const known = this.listed.get(databaseId);
    if (known && Date.now() - known.at < (known.stale ? RELISTED_AFTER_CHANGE_MS : LISTED_FOR_MS)) return known.bytes;
    let bytes = 0;
    for await (const o of this.store.store.list(storeKeys.database(databaseId))) bytes += o.size;
    this.listed.set(databaseId, { bytes, at: Date.now(), stale: false });
    return bytes;
  }

  /** The database's objects changed (a stop, a backup, a prune): list them again next time. */
  changed(databaseId: string): void {
    this.listed.delete(databaseId);
  }

  /** A running compute's WAL went up: list again, but not more often than every RELISTED_AFTER_CHANGE_MS (a LIST is a billed request). */
  growing(databaseId: string): void {
    const known = this.listed.get(databaseId);
    if (known) known.stale = true;
  }

  /** Removes every object of the database. */
  async deleteDatabase(databaseId: string): Promise<void> {
    const keys: string[] = [];
    for await (const o of this.store.store.list(storeKeys.database(databaseId))) keys.push(o.key);
    await this.store.store.delete(keys);
    this.changed(databaseId);
  }
}
