import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Copies a directory tree, sharing blocks where the filesystem can (XFS, btrfs); a full copy on ext4. */
export async function copyTree(from: string, to: string): Promise<void> {
  await execFileAsync('cp', ['-a', '--reflink=auto', from, to]);
}

/** Hard-links every file of a tree into a new tree: no data is copied (the files are never changed in place). */
export async function linkTree(from: string, to: string): Promise<void> {
  await execFileAsync('cp', ['-al', from, to]);
}

/** Bytes of a tree's files (for a backup's record). */
export async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await execFileAsync('du', ['-sb', dir]);
  return Number(stdout.split('\t')[0]);
}

/** Files a copy of a data directory must not carry into another cluster's start. */
export function stripRunFiles(pgdata: string): void {
  for (const f of ['postmaster.pid', 'postmaster.opts']) fs.rmSync(path.join(pgdata, f), { force: true });
}
