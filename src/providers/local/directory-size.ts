import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Bytes of every file under dir (0 when it does not exist yet), a file with several hard links
 * counting its share (size / links) in each place: branches share archived WAL and base backups by
 * hard links, and the sum over a database's branches is then the bytes it really takes.
 */
export async function directorySize(dir: string): Promise<number> {
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true, recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let total = 0;
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    // A file removed meanwhile (a WAL segment recycled) simply does not count.
    total += await fs.stat(path.join(entry.parentPath, entry.name)).then((s) => s.size / s.nlink, () => 0);
  }
  return Math.round(total);
}
