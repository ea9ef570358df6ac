/** Small helpers every benchmark shares: percentiles, timing, and one table format. */

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/**
 * Takes readings (each waits its own interval) until two in a row agree within `within`, at most
 * `tries`; returns the last: a gateway's background work has settled before what is measured.
 */
export async function settledReading(read: () => Promise<number>, within: number, tries = 30): Promise<number> {
  let last = await read();
  for (let i = 1; i < tries; i++) {
    const now = await read();
    if (Math.abs(now - last) < within) return now;
    last = now;
  }
  return last;
}

/** Milliseconds fn took. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export interface Row {
  name: string;
  samples: number[];
}

/** Prints p50/p95/p99 per row and each row's p50 ratio to the baseline row. */
export function printLatencyTable(title: string, rows: Row[], baseline: Row): void {
  const base = percentile(baseline.samples, 50);
  console.log(`\n${title}`);
  console.log(`${'case'.padEnd(44)} ${'n'.padStart(4)} ${'p50 ms'.padStart(9)} ${'p95 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'p50 ratio'.padStart(10)}`);
  for (const row of rows) {
    const cells = [50, 95, 99].map((p) => percentile(row.samples, p).toFixed(1).padStart(9));
    const ratio = (percentile(row.samples, 50) / base).toFixed(2).padStart(10);
    console.log(`${row.name.padEnd(44)} ${String(row.samples.length).padStart(4)} ${cells.join(' ')} ${ratio}`);
  }
  console.log(`(ratio = p50 / p50 of "${baseline.name}", measured in this run)`);
}
