import { BadRequestError } from '../errors.ts';

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export const isLsn = (text: string): boolean => LSN.test(text);

/** '0/16B3748' → its byte position. */
export function parseLsn(text: string): bigint {
  const m = LSN.exec(text);
  if (!m) throw new Error(`not an LSN: ${text}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(position: bigint): string {
  return `${(position >> 32n).toString(16).toUpperCase()}/${(position & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** A moment of a branch's history: a time, or a WAL position. */
export type PointInTime = { time: Date } | { lsn: string };

// RFC 3339: a date, a time, and an offset (Z or ±hh:mm); fractions of a second allowed.
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** `at` of the API: an RFC 3339 time or an LSN like 0/16B3748; anything else is a 400. */
export function parsePointInTime(at: string, field = 'at'): PointInTime {
  if (isLsn(at)) return { lsn: formatLsn(parseLsn(at)) };
  const time = RFC3339.test(at) ? new Date(at) : undefined;
  if (!time || Number.isNaN(time.getTime())) {
    throw new BadRequestError(`${field}: malformed: "${at}" is neither an RFC 3339 time (2025-01-31T12:00:00Z) nor an LSN (0/16B3748)`);
  }
  return { time };
}

export const describePoint = (at: PointInTime): string => ('time' in at ? at.time.toISOString() : `LSN ${at.lsn}`);
