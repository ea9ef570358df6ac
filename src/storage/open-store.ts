import type { Logger } from '../log.ts';
import { FileStore } from './file-store.ts';
import type { ObjectStore } from './object-store.ts';
import type { StorageSettings } from './storage-config.ts';

/**
 * The store the settings name: an S3-compatible bucket, or a directory. The AWS SDK is loaded only
 * for a bucket (a third of a second of every process's start otherwise).
 */
export async function openStore(settings: StorageSettings, log: Logger): Promise<ObjectStore> {
  const at = settings.location;
  const store = at.kind === 'file' ? new FileStore(at.root) : new (await import('./s3-store.ts')).S3Store({ ...at, requestTimeoutMs: settings.requestTimeoutMs });
  if (settings.offHost) log.info({ storage: store.location }, 'storage: data and history of local databases live in this store; a node\'s disk is a cache');
  else log.warn({ storage: store.location }, 'storage: no PGFLEET_STORAGE_URL, so the store is a directory inside the data dir: losing this disk loses every database on it, history included');
  return store;
}
