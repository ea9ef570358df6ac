import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { StoreIntegrityError } from './object-store.ts';
import type { SealScope, SealedStore } from './sealed-store.ts';
import { workQueue } from './work-queue.ts';

/** Files are cut into chunks of this size; a chunk already in the store (same content) is not uploaded again. */
const CHUNK_BYTES = 1024 * 1024;
/** Chunks are uploaded together in packs of about this size (one object each). */
const PACK_BYTES = 8 * 1024 * 1024;

/** Where a chunk's sealed bytes are: a pack, an offset, a length, and whose key sealed them. */
export interface ChunkLocation {
  pack: string;
  offset: number;
  length: number;
  scope: SealScope;
}

/**
 * A directory tree in the store: its files as lists of content-addressed chunks (SHA-256 of the
 * plain bytes), and where each chunk is. Sealed like every object, so names and hashes do not leak.
 */
export interface Manifest {
  version: 1;
  dirs: { path: string; mode: number }[];
  files: { path: string; mode: number; size: number; chunks: string[] }[];
  /** Pack keys, referred to by index. */
  packs: { key: string; scope: SealScope }[];
  /** chunk id → [pack index, offset, length] */
  chunks: Record<string, [number, number, number]>;
}

export interface SnapshotOptions {
  /** The tree to store. */
  dir: string;
  scope: SealScope;
  manifestKey: string;
  /** Where new packs go (a prefix ending in '/'). */
  packPrefix: string;
  /** Chunks already in the store (earlier snapshots, the template): not uploaded again. */
  known: ReadonlyMap<string, ChunkLocation>;
  /** Paths (relative, '/'-separated) left out. */
  skip?: (relative: string) => boolean;
  /** Files that are not on disk but belong in the tree, known once the files are read (an online backup's backup_label). */
  extra?: () => Promise<{ path: string; mode: number; content: Buffer }[]>;
}

export interface SnapshotResult {
  manifest: Manifest;
  /** Bytes of the tree's files. */
  bytes: number;
  /** Sealed bytes this snapshot added to the store. */
  uploadedBytes: number;
}

/** Every chunk a manifest uses, with its location. */
export function chunkLocations(manifest: Manifest): Map<string, ChunkLocation> {
  const out = new Map<string, ChunkLocation>();
  for (const [id, [pack, offset, length]] of Object.entries(manifest.chunks)) {
    out.set(id, { pack: manifest.packs[pack]!.key, scope: manifest.packs[pack]!.scope, offset, length });
  }
  return out;
}

/** The pack objects a manifest refers to. */
export const packKeys = (manifest: Manifest): string[] => manifest.packs.map((p) => p.key);

async function walk(root: string, rel: string, skip: (r: string) => boolean, out: { dirs: Manifest['dirs']; files: { path: string; mode: number; size: number }[] }): Promise<void> {
  let entries;
  try {
    entries = await fs.readdir(path.join(root, rel), { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && rel !== '') return; // removed meanwhile (a running server)
    throw err;
  }
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const r = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (skip(r)) continue;
    const stat = await fs.stat(path.join(root, r)).catch(() => undefined);
    if (!stat) continue;
    if (entry.isDirectory()) {
      out.dirs.push({ path: r, mode: stat.mode & 0o7777 });
      await walk(root, r, skip, out);
    } else if (entry.isFile()) {
      out.files.push({ path: r, mode: stat.mode & 0o7777, size: stat.size });
    }
  }
}

/**
 * Stores a tree: reads each file in chunks, hashes them, and uploads (compressed and sealed, in
 * packs) only the chunks the store does not hold yet; then the manifest. Files that change while
 * they are read (an online backup) are stored as read; files that vanish are left out.
 */
export async function snapshotTree(store: SealedStore, opts: SnapshotOptions): Promise<SnapshotResult> {
  const listed = { dirs: [] as Manifest['dirs'], files: [] as { path: string; mode: number; size: number }[] };
  await walk(opts.dir, '', opts.skip ?? (() => false), listed);
  const manifest: Manifest = { version: 1, dirs: listed.dirs, files: [], packs: [], chunks: {} };
  const packIndex = new Map<string, number>();
  const locate = (id: string, at: ChunkLocation) => {
    let i = packIndex.get(at.pack);
    if (i === undefined) {
      i = manifest.packs.push({ key: at.pack, scope: at.scope }) - 1;
      packIndex.set(at.pack, i);
    }
    manifest.chunks[id] = [i, at.offset, at.length];
  };
  const uploads = workQueue(3);
  const inFlight: Promise<void>[] = [];
  let pack: Buffer[] = [];
  let packSize = 0;
  let pending: { id: string; offset: number; length: number }[] = [];
  let uploadedBytes = 0;
  let bytes = 0;
  const flushPack = () => {
    if (pack.length === 0) return;
    const key = `${opts.packPrefix}${crypto.randomBytes(12).toString('hex')}`;
    const body = Buffer.concat(pack);
    for (const p of pending) locate(p.id, { pack: key, scope: opts.scope, offset: p.offset, length: p.length });
    uploadedBytes += body.length;
    inFlight.push(uploads(() => store.store.put(key, body)));
    pack = [];
    packSize = 0;
    pending = [];
  };
  // One sealing per distinct chunk, however often it occurs (pages of zeros, files alike).
  const sealing = new Map<string, Promise<void>>();
  const addChunk = (content: Buffer): Promise<string> => {
    const id = crypto.createHash('sha256').update(content).digest('hex');
    const known = opts.known.get(id);
    if (known && !manifest.chunks[id]) locate(id, known);
    if (manifest.chunks[id]) return Promise.resolve(id);
    let done = sealing.get(id);
    if (!done) {
      done = store.pack(opts.scope, id, content).then((sealed) => {
        pending.push({ id, offset: packSize, length: sealed.length });
        pack.push(sealed);
        packSize += sealed.length;
        if (packSize >= PACK_BYTES) flushPack();
      });
      sealing.set(id, done);
    }
    return done.then(() => id);
  };
  // A few chunks are compressed at once (zlib runs in the thread pool); reading waits for room.
  const outstanding = new Set<Promise<string>>();
  const add = async (content: Buffer): Promise<{ id: Promise<string> }> => {
    while (outstanding.size >= 8) await Promise.race(outstanding);
    const p = addChunk(content);
    outstanding.add(p);
    void p.finally(() => outstanding.delete(p)).catch(() => {});
    return { id: p };
  };
  for (const file of listed.files) {
    const handle = await fs.open(path.join(opts.dir, file.path), 'r').catch(() => undefined);
    if (!handle) continue;
    const chunks: Promise<string>[] = [];
    let size = 0;
    try {
      for (;;) {
        const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
        const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, size);
        if (bytesRead === 0) break;
        chunks.push((await add(buffer.subarray(0, bytesRead))).id);
        size += bytesRead;
        if (bytesRead < CHUNK_BYTES) break;
      }
    } finally {
      await handle.close();
    }
    bytes += size;
    manifest.files.push({ path: file.path, mode: file.mode, size, chunks: await Promise.all(chunks) });
  }
  for (const extra of (await opts.extra?.()) ?? []) {
    manifest.files = manifest.files.filter((f) => f.path !== extra.path);
    manifest.files.push({ path: extra.path, mode: extra.mode, size: extra.content.length, chunks: extra.content.length ? [await addChunk(extra.content)] : [] });
    bytes += extra.content.length;
  }
  flushPack();
  await Promise.all(inFlight);
  // The manifest goes last: a snapshot whose packs did not all arrive is never referred to.
  await store.put(opts.scope, opts.manifestKey, Buffer.from(JSON.stringify(manifest)));
  return { manifest, bytes, uploadedBytes };
}

export async function readManifest(store: SealedStore, scope: SealScope, key: string): Promise<Manifest> {
  const body = await store.get(scope, key);
  if (!body) throw new StoreIntegrityError(key, 'the snapshot is missing from the store');
  return JSON.parse(body.toString('utf8')) as Manifest;
}

/** A tree already on this node and its manifest (the node's copy of a template): files equal to its are copied, not fetched. */
export interface Seed {
  dir: string;
  manifest: Manifest;
}

/**
 * Writes the tree a manifest describes into dest (which must not exist): files the seed holds as
 * they are copied from it, the rest fetched, packs a few at once, each chunk checked (its seal,
 * then its hash) before it is written.
 */
export async function restoreTree(store: SealedStore, manifest: Manifest, dest: string, seed?: Seed): Promise<void> {
  await fs.mkdir(dest, { recursive: true, mode: 0o700 });
  for (const d of manifest.dirs) await fs.mkdir(path.join(dest, d.path), { recursive: true, mode: d.mode });
  const seeded = new Map(seed?.manifest.files.map((f) => [f.path, f.chunks.join()]));
  // Where each chunk goes: a chunk may appear in several files, or several times in one.
  const targets = new Map<string, { file: string; position: number }[]>();
  for (const f of manifest.files) {
    const file = path.join(dest, f.path);
    if (seed && seeded.get(f.path) === f.chunks.join()) {
      await fs.copyFile(path.join(seed.dir, f.path), file, fs.constants.COPYFILE_FICLONE);
      await fs.chmod(file, f.mode);
      continue;
    }
    await fs.writeFile(file, Buffer.alloc(0), { mode: f.mode });
    await fs.chmod(file, f.mode);
    f.chunks.forEach((id, i) => {
      const list = targets.get(id) ?? [];
      list.push({ file, position: i * CHUNK_BYTES });
      targets.set(id, list);
    });
  }
  const byPack = new Map<number, [string, number, number][]>();
  for (const [id, [pack, offset, length]] of Object.entries(manifest.chunks)) {
    if (!targets.has(id)) continue;
    const list = byPack.get(pack) ?? [];
    list.push([id, offset, length]);
    byPack.set(pack, list);
  }
  const fetches = workQueue(4);
  await Promise.all([...byPack].map(([index, chunks]) => fetches(async () => {
    const { key, scope } = manifest.packs[index]!;
    const body = await store.store.get(key);
    if (!body) throw new StoreIntegrityError(key, 'a pack the snapshot needs is missing from the store');
    for (const [id, offset, length] of chunks) {
      if (offset + length > body.length) throw new StoreIntegrityError(key, `chunk ${id.slice(0, 12)} runs past the end of the pack`);
      const plain = await store.unpack(scope, id, body.subarray(offset, offset + length));
      if (crypto.createHash('sha256').update(plain).digest('hex') !== id) throw new StoreIntegrityError(key, `chunk ${id.slice(0, 12)} does not hash to its id`);
      for (const t of targets.get(id)!) {
        const handle = await fs.open(t.file, 'r+');
        try {
          await handle.write(plain, 0, plain.length, t.position);
        } finally {
          await handle.close();
        }
      }
    }
  })));
}
