import type { Catalog } from '../catalog/catalog.ts';
import { hourOf } from './hours.ts';
import { USAGE_METRICS, type UsageMetric, type UsageOwner } from './metrics.ts';

export interface Pending {
  owner: UsageOwner;
  metric: UsageMetric;
  bucket: number;
  value: number;
}

/** Pending values by database, then by branch, metric and bucket: a quota check reads one database's. */
type PendingByDatabase = Map<string, Map<string, Pending>>;

/**
 * Usage not yet written to the catalog. The hot path only adds to a map; flush() writes every
 * pending value in one statement and forgets only what that statement committed, so a failed
 * flush is retried and a committed one is never counted twice.
 */
export class UsageLedger {
  private pending: PendingByDatabase = new Map();

  record(owner: UsageOwner, metric: UsageMetric, value: number, at = Date.now()): void {
    const bucket = hourOf(at);
    const key = `${owner.branchId}\0${metric}\0${bucket}`;
    let database = this.pending.get(owner.databaseId);
    if (!database) this.pending.set(owner.databaseId, (database = new Map()));
    const p = database.get(key);
    if (!p) {
      database.set(key, { owner, metric, bucket, value });
      return;
    }
    const aggregation = USAGE_METRICS[metric];
    p.value = aggregation === 'sum' ? p.value + value : aggregation === 'max' ? Math.max(p.value, value) : value;
  }

  /** Not yet flushed sums of a database since `since` (ms), by metric. */
  pendingSums(databaseId: string, since: number): Partial<Record<UsageMetric, number>> {
    const out: Partial<Record<UsageMetric, number>> = {};
    for (const p of this.pending.get(databaseId)?.values() ?? []) {
      if (p.bucket < since || USAGE_METRICS[p.metric] !== 'sum') continue;
      out[p.metric] = (out[p.metric] ?? 0) + p.value;
    }
    return out;
  }

  /** The newest pending value of a 'last' metric (storage) of each of the database's branches that has one. */
  latest(databaseId: string, metric: UsageMetric): Map<string, number> {
    const newest = new Map<string, Pending>();
    for (const p of this.pending.get(databaseId)?.values() ?? []) {
      if (p.metric !== metric) continue;
      const seen = newest.get(p.owner.branchId);
      if (!seen || p.bucket > seen.bucket) newest.set(p.owner.branchId, p);
    }
    return new Map([...newest].map(([branch, p]) => [branch, p.value]));
  }

  /** Writes everything pending; returns what was written. */
  async flush(catalog: Catalog): Promise<Pending[]> {
    const batch = this.pending;
    if (batch.size === 0) return [];
    this.pending = new Map();
    const rows = [...batch.values()].flatMap((database) => [...database.values()]);
    try {
      await catalog.query(
        `INSERT INTO usage (partner_id, database_id, branch_id, metric, bucket, value)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[])
         ON CONFLICT (database_id, branch_id, metric, bucket) DO UPDATE SET value = CASE
           WHEN usage.metric = ANY($7) THEN GREATEST(usage.value, excluded.value)
           WHEN usage.metric = ANY($8) THEN excluded.value
           ELSE usage.value + excluded.value END`,
        [
          rows.map((r) => r.owner.partnerId),
          rows.map((r) => r.owner.databaseId),
          rows.map((r) => r.owner.branchId),
          rows.map((r) => r.metric),
          rows.map((r) => new Date(r.bucket)),
          rows.map((r) => Math.round(r.value)),
          metricsAggregatedBy('max'),
          metricsAggregatedBy('last'),
        ],
      );
    } catch (err) {
      // Put the batch back under what arrived meanwhile; the next flush retries it.
      const arrived = this.pending;
      this.pending = batch;
      for (const database of arrived.values()) for (const p of database.values()) this.record(p.owner, p.metric, p.value, p.bucket);
      throw err;
    }
    return rows;
  }
}

const metricsAggregatedBy = (aggregation: string) =>
  Object.entries(USAGE_METRICS).filter(([, a]) => a === aggregation).map(([m]) => m);
