import type { Catalog } from '../catalog/catalog.ts';
import { BadRequestError } from '../errors.ts';
import { USAGE_METRICS, type UsageMetric, reported } from './metrics.ts';
import { monthOf } from './hours.ts';
import type { UsageTracker } from './usage-tracker.ts';

export const GRANULARITIES = { hourly: 'hour', daily: 'day', monthly: 'month' } as const;
export type Granularity = keyof typeof GRANULARITIES;

/** Usage as the consumption API shows it: times in seconds, everything else as stored. */
export type UsageValues = Record<string, number>;

export interface UsagePeriod {
  period_start: string;
  usage: UsageValues;
}

const MAX_POINTS = 2000;
const STEP_MS: Record<Granularity, number> = { hourly: 3_600_000, daily: 86_400_000, monthly: 28 * 86_400_000 };

function toUsageValues(rows: { metric: UsageMetric; value: number }[]): UsageValues {
  const out: UsageValues = {};
  for (const row of rows) {
    const { name, value } = reported(row.metric, row.value);
    out[name] = value;
  }
  return out;
}

// Storage and peaks are levels, the rest are amounts: a period shows the highest level and the summed amount.
const AGGREGATE = `CASE WHEN metric = ANY($LEVELS) THEN max(value) ELSE sum(value) END::float8`;
const LEVELS = Object.entries(USAGE_METRICS).filter(([, a]) => a !== 'sum').map(([m]) => m);

/** A [from, to) range from query strings: default the current month so far; 400 naming the field. */
export function parseRange(from: string | undefined, to: string | undefined, granularity: Granularity = 'daily'): { from: Date; to: Date } {
  const parse = (field: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return new Date(fallback);
    const ms = Date.parse(v);
    if (Number.isNaN(ms)) throw new BadRequestError(`${field}: not a timestamp; use ISO 8601, e.g. 2026-11-01T00:00:00Z`);
    return new Date(ms);
  };
  const now = Date.now();
  const range = { from: parse('from', from, monthOf(now)), to: parse('to', to, now + 1) };
  if (range.to <= range.from) throw new BadRequestError('to: must be after from');
  if ((range.to.getTime() - range.from.getTime()) / STEP_MS[granularity] > MAX_POINTS) {
    throw new BadRequestError(`from: the range holds more than ${MAX_POINTS} ${granularity} periods; narrow it or use a coarser granularity`);
  }
  return range;
}

/** One database's usage per period (pending usage is flushed first, so the answer is current). */
export async function databaseUsage(tracker: UsageTracker, catalog: Catalog, databaseId: string, range: { from: Date; to: Date }, granularity: Granularity): Promise<UsagePeriod[]> {
  await tracker.flush();
  const { rows } = await catalog.query<{ period: Date; metric: UsageMetric; value: number }>(
    `SELECT date_trunc($4, bucket, 'UTC') AS period, metric, ${AGGREGATE.replace('$LEVELS', '$5')} AS value
       FROM usage WHERE database_id = $1 AND bucket >= date_trunc('hour', $2::timestamptz) AND bucket < $3
      GROUP BY 1, 2 ORDER BY 1, 2`,
    [databaseId, range.from, range.to, GRANULARITIES[granularity], LEVELS],
  );
  const periods = new Map<number, { metric: UsageMetric; value: number }[]>();
  for (const r of rows) {
    const key = r.period.getTime();
    if (!periods.has(key)) periods.set(key, []);
    periods.get(key)!.push(r);
  }
  return [...periods].map(([ms, values]) => ({ period_start: new Date(ms).toISOString(), usage: toUsageValues(values) }));
}

/** A partner's usage per database over the range, in database id order, a page at a time. */
export async function fleetUsage(
  tracker: UsageTracker,
  catalog: Catalog,
  partnerId: string,
  range: { from: Date; to: Date },
  page: { limit: number; cursor?: string },
): Promise<{ items: { database_id: string; usage: UsageValues }[]; nextCursor: string | undefined }> {
  await tracker.flush();
  const after = page.cursor === undefined ? '' : Buffer.from(page.cursor, 'base64url').toString('utf8');
  const { rows } = await catalog.query<{ database_id: string; metric: UsageMetric; value: number }>(
    `WITH ids AS (
       SELECT DISTINCT database_id FROM usage
        WHERE partner_id = $1 AND bucket >= date_trunc('hour', $2::timestamptz) AND bucket < $3 AND database_id > $4
        ORDER BY database_id LIMIT $5)
     SELECT database_id, metric, ${AGGREGATE.replace('$LEVELS', '$6')} AS value
       FROM usage WHERE partner_id = $1 AND bucket >= date_trunc('hour', $2::timestamptz) AND bucket < $3
        AND database_id IN (SELECT database_id FROM ids)
      GROUP BY 1, 2 ORDER BY 1, 2`,
    [partnerId, range.from, range.to, after, page.limit + 1, LEVELS],
  );
  const byDatabase = new Map<string, { metric: UsageMetric; value: number }[]>();
  for (const r of rows) {
    if (!byDatabase.has(r.database_id)) byDatabase.set(r.database_id, []);
    byDatabase.get(r.database_id)!.push(r);
  }
  const ids = [...byDatabase.keys()];
  const more = ids.length > page.limit;
  const items = ids.slice(0, page.limit).map((id) => ({ database_id: id, usage: toUsageValues(byDatabase.get(id)!) }));
  return { items, nextCursor: more ? Buffer.from(items[items.length - 1]!.database_id).toString('base64url') : undefined };
}

/** Every database's all-time totals (for /metrics/usage): only databases with usage appear. */
export async function usageTotals(tracker: UsageTracker, catalog: Catalog): Promise<{ partner_id: string; database_id: string; metric: UsageMetric; value: number }[]> {
  await tracker.flush();
  const { rows } = await catalog.query(
    `SELECT partner_id, database_id, metric,
            CASE WHEN metric = ANY($1) THEN (array_agg(value ORDER BY bucket DESC))[1] ELSE sum(value) END::float8 AS value
       FROM usage GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    [LEVELS],
  );
  return rows;
}

/**
 * Each partner's usage over the range (the operator's monthly totals): amounts summed over its
 * databases, and storage_bytes as what its databases hold now (each branch's latest sample).
 */
export async function partnerTotals(tracker: UsageTracker, catalog: Catalog, range: { from: Date; to: Date }): Promise<Map<string, UsageValues>> {
  await tracker.flush();
  const sums = Object.entries(USAGE_METRICS).filter(([, a]) => a === 'sum').map(([m]) => m);
  const { rows } = await catalog.query<{ partner_id: string; metric: UsageMetric; value: number }>(
    `SELECT partner_id, metric, sum(value)::float8 AS value FROM usage
      WHERE bucket >= date_trunc('hour', $1::timestamptz) AND bucket < $2 AND metric = ANY($3) GROUP BY 1, 2
     UNION ALL
     SELECT d.partner_id, 'storage_bytes', sum(s.value)::float8 FROM branches b JOIN databases d ON d.id = b.database_id
       CROSS JOIN LATERAL (SELECT u.value FROM usage u WHERE u.database_id = d.id AND u.branch_id = b.id AND u.metric = 'storage_bytes'
                            ORDER BY u.bucket DESC LIMIT 1) s GROUP BY 1`,
    [range.from, range.to, sums]);
  const out = new Map<string, { metric: UsageMetric; value: number }[]>();
  for (const r of rows) {
    if (!out.has(r.partner_id)) out.set(r.partner_id, []);
    out.get(r.partner_id)!.push(r);
  }
  return new Map([...out].map(([id, values]) => [id, toUsageValues(values)]));
}
