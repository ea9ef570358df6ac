import { StoreIntegrityError } from '../../storage/object-store.ts';
import type { SealScope, SealedStore } from '../../storage/sealed-store.ts';
import { storeKeys } from '../../storage/keys.ts';
import { WAL_SEGMENT_MB } from '../../pg/server.ts';

export const SEGMENT_BYTES = WAL_SEGMENT_MB * 1024 * 1024;
const SEGMENTS_PER_ID = 0x100000000n / BigInt(SEGMENT_BYTES);
const hex8 = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');

/** The name Postgres gives the segment holding `position` on timeline `tli`. */
export function segmentName(tli: number, position: bigint): string {
  const segno = position / BigInt(SEGMENT_BYTES);
  return hex8(tli) + hex8(segno / SEGMENTS_PER_ID) + hex8(segno % SEGMENTS_PER_ID);
}

/** The first position of a segment file named by Postgres, and its timeline. */
export function parseSegmentName(name: string): { tli: number; start: bigint } {
  const tli = parseInt(name.slice(0, 8), 16);
  const segno = BigInt(`0x${name.slice(8, 16)}`) * SEGMENTS_PER_ID + BigInt(`0x${name.slice(16, 24)}`);
  return { tli, start: segno * BigInt(SEGMENT_BYTES) };
}

export const segmentStart = (position: bigint): bigint => position - (position % BigInt(SEGMENT_BYTES));
export const historyFileName = (tli: number): string => `${hex8(tli)}.history`;

const PART = /^([0-9A-F]{24})\.([0-9A-F]{8})-([0-9A-F]{8})$/;

/** One history's WAL in the store, as it was streamed: whole segments, and parts of the newest ones. */
export interface SegmentBytes {
  /** A whole segment's bytes (zeros past `valid`, as Postgres pads a partial segment). */
  data: Buffer;
  /** Bytes from the segment's start that are the compute's. */
  valid: number;
}

/**
 * A database's WAL in the store, per history (one Postgres timeline each): a segment arrives as
 * parts while the compute writes it (`<segment>.<from>-<to>`, offsets in the segment) and as one
 * object once it is full; `<tli>.history` files name the timeline's past.
 */
export class WalArchive {
  private readonly scope: SealScope;

  constructor(private readonly store: SealedStore, private readonly databaseId: string) {
    this.scope = `db-${databaseId.replace(/^db-/, '')}` as SealScope;
  }

  private prefix(historyId: string): string {
    return storeKeys.wal(this.databaseId, historyId);
  }

  putPart(historyId: string, tli: number, from: bigint, data: Buffer): Promise<void> {
    const offset = Number(from % BigInt(SEGMENT_BYTES));
    if (offset + data.length > SEGMENT_BYTES) throw new Error('a WAL part must lie inside one segment');
    const name = `${segmentName(tli, from)}.${hex8(offset)}-${hex8(offset + data.length)}`;
    return this.store.put(this.scope, this.prefix(historyId) + name, data);
  }

  putSegment(historyId: string, name: string, data: Buffer): Promise<void> {
    if (data.length !== SEGMENT_BYTES) throw new Error(`a whole segment is ${SEGMENT_BYTES} bytes, got ${data.length}`);
    return this.store.put(this.scope, this.prefix(historyId) + name, data);
  }

  putHistoryFile(historyId: string, tli: number, content: Buffer): Promise<void> {
    return this.store.put(this.scope, this.prefix(historyId) + historyFileName(tli), content);
  }

  historyFile(historyId: string, tli: number): Promise<Buffer | undefined> {
    return this.store.get(this.scope, this.prefix(historyId) + historyFileName(tli));
  }

  /** The parts of a segment in the store, by start offset. */
  private async parts(historyId: string, name: string): Promise<{ key: string; from: number; to: number }[]> {
    const out = [];
    for await (const o of this.store.store.list(`${this.prefix(historyId)}${name}.`)) {
      const m = PART.exec(o.key.slice(o.key.lastIndexOf('/') + 1));
      if (m) out.push({ key: o.key, from: parseInt(m[2]!, 16), to: parseInt(m[3]!, 16) });
    }
    return out.sort((a, b) => a.from - b.from || b.to - a.to);
  }

  /**
   * A segment as the store has it: the whole object, else its parts joined while they follow on
   * from the segment's start; undefined when the store has none of its start.
   */
  async segment(historyId: string, name: string, attempt = 0): Promise<SegmentBytes | undefined> {
    const whole = await this.store.get(this.scope, this.prefix(historyId) + name);
    if (whole) {
      if (whole.length !== SEGMENT_BYTES) throw new StoreIntegrityError(name, `a whole segment of ${whole.length} bytes`);
      return { data: whole, valid: SEGMENT_BYTES };
    }
    const data = Buffer.alloc(SEGMENT_BYTES);
    let valid = 0;
    for (const part of await this.parts(historyId, name)) {
      if (part.from > valid) break; // a gap: what follows cannot be replayed
      if (part.to <= valid) continue;
      const bytes = await this.store.get(this.scope, part.key);
      // Removed since it was listed: the whole segment took the parts' place meanwhile.
      if (!bytes) {
        if (attempt < 3) return this.segment(historyId, name, attempt + 1);
        throw new StoreIntegrityError(part.key, 'a WAL part vanished while it was read, and no whole segment replaced it');
      }
      bytes.copy(data, part.from);
      valid = Math.max(valid, part.from + bytes.length);
    }
    return valid === 0 ? undefined : { data, valid };
  }

  /** Removes a segment's parts (once its whole object is in the store). */
  async dropParts(historyId: string, name: string): Promise<void> {
    const parts = await this.parts(historyId, name);
    if (parts.length) await this.store.store.delete(parts.map((p) => p.key));
  }

  /**
   * Where the history's WAL in the store ends, looking forward from `from` (a position known to be
   * stored, or the history's start): the first position the store does not hold.
   */
  async end(historyId: string, tli: number, from: bigint): Promise<bigint> {
    let start = segmentStart(from);
    let end = from;
    for (;;) {
      const seg = await this.segment(historyId, segmentName(tli, start));
      if (!seg) return end;
      end = start + BigInt(seg.valid);
      if (seg.valid < SEGMENT_BYTES) return end;
      start += BigInt(SEGMENT_BYTES);
    }
  }

  /** Every object of the history's WAL (pruning, metering). */
  list(historyId: string) {
    return this.store.store.list(this.prefix(historyId));
  }

  /** Segments (whole or parts) that end before `position`, and removes them. */
  async pruneBefore(historyId: string, position: bigint): Promise<number> {
    const doomed: string[] = [];
    for await (const o of this.list(historyId)) {
      const name = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (name.endsWith('.history')) continue;
      const { start } = parseSegmentName(name.slice(0, 24));
      if (start + BigInt(SEGMENT_BYTES) <= segmentStart(position)) doomed.push(o.key);
    }
    if (doomed.length) await this.store.store.delete(doomed);
    return doomed.length;
  }
}
