import type { Catalog } from '../catalog/catalog.ts';
import { monthOf } from './hours.ts';
import type { Pending } from './ledger.ts';
import type { UsageMetric } from './metrics.ts';

export interface MonthTotals {
  month: number;
  sums: Partial<Record<UsageMetric, number>>;
  /** The latest flushed storage of each branch (data, WAL archive and base backups). */
  storage: Map<string, number>;
}

/**
 * Month-to-date usage totals of databases, read from the catalog once and kept current by this
 * gateway's flushes (fold) and other gateways' messages (forget). Loads run in the caller's
 * queue with its flushes, so that a loaded total never already holds a batch folded after it.
 */
export class MonthTotalsCache {
  private readonly known = new Map<string, MonthTotals>();
  /** Loads under way; one that a forget overtakes is dropped from here and its result not kept. */
  private readonly loading = new Map<string, Promise<MonthTotals>>();

  constructor(
    private readonly catalog: Catalog,
    private readonly serially: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  /**
   * Drops a database's totals. A load already under way may have read the catalog before the
   * change this follows: it still answers its callers, but is not kept (the route cache's epoch rule).
   */
  forget(databaseId: string): void {
    this.known.delete(databaseId);
    this.loading.delete(databaseId);
  }

  /** Messages may have been missed (a lost subscription): nothing known is trusted. */
  forgetAll(): void {
    for (const id of [...this.known.keys(), ...this.loading.keys()]) this.forget(id);
  }

  get(databaseId: string): Promise<MonthTotals> {
    const month = monthOf(Date.now());
    const known = this.known.get(databaseId);
    if (known?.month === month) return Promise.resolve(known);
    const pending = this.loading.get(databaseId);
    if (pending) return pending;
    const load: Promise<MonthTotals> = this.serially(async () => {
      try {
        const totals = await this.read(databaseId, month);
        if (this.loading.get(databaseId) === load) this.known.set(databaseId, totals);
        return totals;
      } finally {
        if (this.loading.get(databaseId) === load) this.loading.delete(databaseId);
      }
    });
    this.loading.set(databaseId, load);
    return load;
  }

  private async read(databaseId: string, month: number): Promise<MonthTotals> {
    const { rows } = await this.catalog.query<{ metric: UsageMetric; total: number }>(
      `SELECT metric, sum(value)::bigint AS total FROM usage WHERE database_id = $1 AND bucket >= $2 GROUP BY metric`,
      [databaseId, new Date(month)],
    );
    // Storage is the sum over the database's branches (deleted ones no longer count).
    const storage = await this.catalog.query<{ branch_id: string; value: number }>(
      `SELECT DISTINCT ON (branch_id) branch_id, value FROM usage
        WHERE database_id = $1 AND metric = 'storage_bytes' AND branch_id IN (SELECT id FROM branches WHERE database_id = $1)
        ORDER BY branch_id, bucket DESC`,
      [databaseId],
    );
    return {
      month, sums: Object.fromEntries(rows.map((r) => [r.metric, r.total])),
      storage: new Map(storage.rows.map((r) => [r.branch_id, Number(r.value)])),
    };
  }

  /** Adds what this gateway just flushed to the totals it knows (call from the same queue as loads). */
  fold(written: readonly Pending[]): void {
    for (const row of written) {
      const totals = this.known.get(row.owner.databaseId);
      if (!totals || row.bucket < totals.month) continue;
      if (row.metric === 'storage_bytes') totals.storage.set(row.owner.branchId, row.value);
      else if (row.metric !== 'connections_peak') totals.sums[row.metric] = (totals.sums[row.metric] ?? 0) + row.value;
    }
  }
}
