/** WAL segment file names, and the archive and restore commands of a branch. */
import { parseLsn } from '../point-in-time.ts';

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
 * Fetches a segment or history file from the archive during recovery (a missing one ends
 * recovery). `-f` passes files archived uncompressed by earlier versions through as they are.
 */
export function restoreCommand(archiveDir: string): string {
  const dir = quote(archiveDir);
  return `[ -f ${dir}/%f ] && gzip -dcf ${dir}/%f > %p`;
}

/** The position part of the name of the segment holding `lsn`, for segments of `segmentBytes`. */
export function segmentPositionOf(lsn: string, segmentBytes: number): string {
  const segno = parseLsn(lsn) / BigInt(segmentBytes);
  const perId = 0x100000000n / BigInt(segmentBytes);
  const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(segno / perId) + hex(segno % perId);
}
