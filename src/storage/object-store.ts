import { PgfleetError } from '../errors.ts';

/** One object as a listing shows it. */
export interface StoredObject {
  key: string;
  size: number;
  modified: Date;
}

/**
 * Where every local database's data and history live: an S3-compatible bucket or a directory.
 * Keys are `/`-separated; a put is atomic (a reader sees the whole object or none), so a torn
 * upload never appears as an object. Implementations throw StoreUnavailableError when the store
 * cannot be reached, never their own error types.
 */
export interface ObjectStore {
  /** Where it is, for logs and error messages (no credentials). */
  readonly location: string;
  put(key: string, body: Buffer): Promise<void>;
  /** The object's bytes; undefined when there is no such object. */
  get(key: string): Promise<Buffer | undefined>;
  /** Every object whose key starts with prefix, in key order. */
  list(prefix: string): AsyncIterable<StoredObject>;
  /** Removes the objects; missing ones are fine. */
  delete(keys: readonly string[]): Promise<void>;
}

/** The store did not answer, or refused: what depends on it waits or fails with this. */
export class StoreUnavailableError extends PgfleetError {
  constructor(location: string, detail: string) {
    super(`the storage (${location}) is unavailable: ${detail}`, '57P03', 503, 'store_unavailable');
  }
}

/** An object read back is not what was written (torn, altered, or sealed with another key). */
export class StoreIntegrityError extends PgfleetError {
  constructor(key: string, detail: string) {
    super(`the stored object ${key} failed its integrity check: ${detail}`, 'XX001', 500, 'store_integrity');
  }
}

/** Reads a whole listing (tests, small prefixes). */
export async function listAll(store: ObjectStore, prefix: string): Promise<StoredObject[]> {
  const out: StoredObject[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}
