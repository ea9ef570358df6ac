/** Usage is kept in hourly buckets (UTC); quotas count per calendar month (UTC). */
export const HOUR_MS = 3_600_000;

export const hourOf = (ms: number): number => Math.floor(ms / HOUR_MS) * HOUR_MS;

export function monthOf(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** Splits [from, to) at hour boundaries: [bucket start, milliseconds in it]. */
export function splitByHour(from: number, to: number): [number, number][] {
  const parts: [number, number][] = [];
  for (let start = from; start < to; ) {
    const end = Math.min(to, hourOf(start) + HOUR_MS);
    parts.push([hourOf(start), end - start]);
    start = end;
  }
  return parts;
}

/** The start of the calendar month (UTC) after the one holding ms. */
export function nextMonth(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}
