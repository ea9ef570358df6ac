import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type ObjectStore, type StoredObject, StoreUnavailableError } from './object-store.ts';

const KEY = /^[A-Za-z0-9._\-/]+$/;

/**
 * Objects as files under a directory (a local disk, or a mount several nodes share). A put writes
 * a temporary file, fsyncs it, renames it into place and fsyncs the directory: the object is
 * whole or absent after a crash.
 */
export class FileStore implements ObjectStore {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = `file://${root}`;
  }

  private pathOf(key: string): string {
    if (!KEY.test(key) || key.split('/').some((part) => part === '' || part === '.' || part === '..')) throw new Error(`not an object key: ${key}`);
    return path.join(this.root, key);
  }

  private unavailable(err: unknown): StoreUnavailableError {
    return new StoreUnavailableError(this.location, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }

  async put(key: string, body: Buffer): Promise<void> {
    const file = this.pathOf(key);
    const dir = path.dirname(file);
    const tmp = path.join(dir, `.${path.basename(file)}.${crypto.randomBytes(6).toString('hex')}.tmp`);
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      const handle = await fs.open(tmp, 'w', 0o600);
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(tmp, file);
      const dirHandle = await fs.open(dir, 'r');
      await dirHandle.sync().finally(() => dirHandle.close());
    } catch (err) {
      await fs.rm(tmp, { force: true }).catch(() => {});
      throw this.unavailable(err);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(this.pathOf(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.unavailable(err);
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    // The directory holding the prefix's last whole component; entries below it are filtered by the prefix.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const start = base === '' ? this.root : this.pathOf(base);
    let entries: StoredObject[];
    try {
      entries = await this.walk(start, base);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw this.unavailable(err);
    }
    for (const e of entries.filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1))) yield e;
  }

  private async walk(dir: string, keyPrefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue; // a put in flight
      const key = keyPrefix === '' ? entry.name : `${keyPrefix}/${entry.name}`;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) out.push(...await this.walk(full, key));
      else if (entry.isFile()) {
        const stat = await fs.stat(full).catch(() => undefined);
        if (stat) out.push({ key, size: stat.size, modified: stat.mtime });
      }
    }
    return out;
  }

  /** Removes the objects, then the directories they leave empty (a deleted database leaves nothing). */
  async delete(keys: readonly string[]): Promise<void> {
    const dirs = new Set<string>();
    try {
      for (const key of keys) {
        await fs.rm(this.pathOf(key), { force: true });
        dirs.add(path.dirname(this.pathOf(key)));
      }
      for (const dir of [...dirs].sort((a, b) => b.length - a.length)) {
        for (let d = dir; d.startsWith(`${this.root}/`); d = path.dirname(d)) {
          if (!(await fs.rmdir(d).then(() => true, () => false))) break; // not empty, or gone
        }
      }
    } catch (err) {
      throw this.unavailable(err);
    }
  }
}
