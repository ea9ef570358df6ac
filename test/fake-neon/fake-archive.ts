/** The fake Neon's WAL archive: each branch's compute archives its segments as Postgres's archive_command would. */
import fs from 'node:fs';
import path from 'node:path';
import { asAdmin } from '../../src/providers/local/compute-admin.ts';
import { formatLsn } from '../../src/providers/point-in-time.ts';

const SEGMENT = /^[0-9A-F]{24}$/;

/** A WAL segment file (timeline + position), as archived; not a .history or .partial file. */
export const isSegment = (name: string): boolean => SEGMENT.test(name);

/** The position part of a segment's name (its timeline left out): comparable as text. */
export const segmentPosition = (name: string): string => name.slice(8);

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Copies a finished segment into the archive, gzip-compressed under its own name (a segment
 * ended by a WAL switch is mostly zeros: 1 MB becomes a few kB): written under a temporary
 * name, fsynced, renamed (atomic), and the directory fsynced. A file already there is accepted
 * only when it holds the same WAL (Postgres may archive a segment twice after a crash); a
 * different one is never overwritten.
 */
export function archiveCommand(archiveDir: string): string {
  const dir = quote(archiveDir);
  return `if [ -e ${dir}/%f ]; then gzip -dcf ${dir}/%f | cmp -s %p -; else gzip -1 -c %p > ${dir}/.%f.tmp && sync ${dir}/.%f.tmp && mv ${dir}/.%f.tmp ${dir}/%f && sync ${dir}; fi`;
}

/**
 * Hard-links archived WAL into another archive: every .history file, and the segments up to
 * and including `upTo` (a segment name; all when undefined). Archived files are never
 * rewritten, so a link is as good as a copy.
 */
export function linkArchive(from: string, to: string, upTo?: string): void {
  if (!fs.existsSync(from)) return;
  for (const name of fs.readdirSync(from)) {
    const isHistory = name.endsWith('.history');
    if (!isHistory && !isSegment(name)) continue; // temporary files of an archiving in flight, .partial files
    if (!isHistory && upTo !== undefined && segmentPosition(name) > segmentPosition(upTo)) continue;
    const target = path.join(to, name);
    if (!fs.existsSync(target)) fs.linkSync(path.join(from, name), target);
  }
}


/** Resolves once the archiver has archived the segment holding `lsn` (polled: pg_backup_stop's own wait sleeps a whole second). */
export async function waitArchived(socketDir: string, port: number, lsn: bigint, timeoutMs = 60_000): Promise<void> {
  await asAdmin(socketDir, port, async (client) => {
    const { rows: [s] } = await client.query<{ segment: string }>('SELECT pg_walfile_name($1::pg_lsn) AS segment', [formatLsn(lsn)]);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows: [a] } = await client.query<{ last: string | null; failed: string | null }>(
        'SELECT last_archived_wal AS last, last_failed_wal AS failed FROM pg_stat_archiver');
      if (a!.last && a!.last.slice(8) >= s!.segment.slice(8)) return;
      if (Date.now() > deadline) throw new Error(`WAL segment ${s!.segment} was not archived within ${timeoutMs / 1000} s (last failed: ${a!.failed})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });
}
