import type { Catalog } from '../catalog/catalog.ts';
import type { Events } from '../events/events.ts';
import { HOUR_MS, hourOf } from './hours.ts';

/** Hours looked at again for late usage (a gateway's last flush, Neon's consumption data pulled hourly over 3 hours). */
const REPORT_LOOKBACK_HOURS = 6;
// Any constant every gateway agrees on: one gateway reports at a time.
const REPORT_LOCK = 0x70676675;

/** The summed amounts of an hour, as the record names them; storage is a level, reported once per hour. */
const AMOUNTS = {
  compute_seconds: ['compute_time_ms', 1000],
  active_seconds: ['active_time_ms', 1000],
  compute_unit_seconds: ['compute_unit_ms', 1000],
  data_transfer_bytes: ['data_transfer_bytes', 1],
  ingress_bytes: ['ingress_bytes', 1],
  written_data_bytes: ['written_data_bytes', 1],
  connections: ['connections', 1],
} as const;
type Amount = keyof typeof AMOUNTS;
type Totals = Partial<Record<Amount | 'storage_byte_hours', number>>;

const hourKey = (ms: number) => new Date(ms).toISOString().slice(0, 13).replace(/[-T]/g, '');

/** What changed since the totals already reported (the first record of an hour carries everything). */
export function usageDelta(current: Totals, reported: Totals | undefined): Totals | undefined {
  const delta: Totals = {};
  let changed = false;
  for (const k of Object.keys(current) as (keyof Totals)[]) {
    // A level (storage) is reported once, with the hour's first record.
    if (k === 'storage_byte_hours' && reported) continue;
    const d = Math.round(((current[k] ?? 0) - (reported?.[k] ?? 0)) * 1000) / 1000;
    if (d !== 0) changed = true;
    delta[k] = d;
  }
  return changed ? delta : undefined;
}

/**
 * Hourly usage records, sent through the outbox as usage.recorded events: once an hour has
 * settled (its usage flushed by every gateway), each database with usage or storage in it gets a
 * record; a later change to that hour (a late flush, Neon's late data) gets one more record with
 * only the difference. Each record's id is its idempotency key, so summing the records of a
 * database gives its usage exactly, however often a record is delivered. Returns the records made.
 */
export async function reportUsage(catalog: Catalog, events: Events, opts: { now: number; settleMs: number }): Promise<number> {
  const until = hourOf(opts.now - opts.settleMs);
  const from = until - REPORT_LOOKBACK_HOURS * HOUR_MS;
  return catalog.tx(async (c) => {
    const { rows: [lock] } = await c.query('SELECT pg_try_advisory_xact_lock($1) AS got', [REPORT_LOCK]);
    if (!lock.got) return 0;
    const current = new Map<string, { partnerId: string; databaseId: string; hour: number; totals: Totals }>();
    const entry = (partnerId: string, databaseId: string, hour: Date) => {
      const key = `${databaseId} ${hour.getTime()}`;
      let e = current.get(key);
      if (!e) current.set(key, (e = { partnerId, databaseId, hour: hour.getTime(), totals: {} }));
      return e;
    };
    const metrics = Object.values(AMOUNTS).map(([m]) => m);
    const amounts = await c.query(
      `SELECT partner_id, database_id, bucket, metric, sum(value)::float8 AS value FROM usage
        WHERE bucket >= $1 AND bucket < $2 AND metric = ANY($3) GROUP BY 1, 2, 3, 4`, [new Date(from), new Date(until), metrics]);
    for (const r of amounts.rows) {
      const [name, scale] = Object.entries(AMOUNTS).find(([, [m]]) => m === r.metric)! as [Amount, readonly [string, number]];
      entry(r.partner_id, r.database_id, r.bucket).totals[name] = r.value / scale[1];
    }
    // Storage during an hour not reported yet: the sum over the database's branches of each one's latest sample by then.
    const storage = await c.query(
      `SELECT d.partner_id, d.id AS database_id, h.hour,
              (SELECT COALESCE(sum(s.value), 0) FROM branches b CROSS JOIN LATERAL (
                 SELECT u.value FROM usage u WHERE u.database_id = d.id AND u.branch_id = b.id AND u.metric = 'storage_bytes'
                    AND u.bucket <= h.hour ORDER BY u.bucket DESC LIMIT 1) s WHERE b.database_id = d.id)::float8 AS bytes
         FROM databases d CROSS JOIN generate_series($1::timestamptz, $2::timestamptz - interval '1 hour', interval '1 hour') AS h(hour)
        WHERE d.created_at < h.hour + interval '1 hour'
          AND NOT EXISTS (SELECT 1 FROM usage_reports r WHERE r.database_id = d.id AND r.hour = h.hour)`,
      [new Date(from), new Date(until)]);
    for (const r of storage.rows) if (r.bytes > 0) entry(r.partner_id, r.database_id, r.hour).totals.storage_byte_hours = r.bytes;
    const reported = await c.query(
      `SELECT DISTINCT ON (database_id, hour) database_id, hour, revision, totals FROM usage_reports
        WHERE hour >= $1 AND hour < $2 ORDER BY database_id, hour, revision DESC`, [new Date(from), new Date(until)]);
    const last = new Map(reported.rows.map((r) => [`${r.database_id} ${r.hour.getTime()}`, { revision: r.revision as number, totals: r.totals as Totals }]));
    let made = 0;
    for (const [key, e] of current) {
      const before = last.get(key);
      const delta = usageDelta(e.totals, before?.totals);
      if (!delta) continue;
      const revision = (before?.revision ?? 0) + 1;
      const id = `usage_${e.databaseId}_${hourKey(e.hour)}_r${revision}`;
      await c.query('INSERT INTO usage_reports (database_id, hour, revision, totals, event_id) VALUES ($1, $2, $3, $4, $5)',
        [e.databaseId, new Date(e.hour), revision, { ...before?.totals, ...e.totals }, id]);
      await events.record({
        id, type: 'usage.recorded', partnerId: e.partnerId, databaseId: e.databaseId,
        data: {
          idempotency_key: id, hour_start: new Date(e.hour).toISOString(), hour_end: new Date(e.hour + HOUR_MS).toISOString(),
          revision, usage: delta,
        },
      }, c);
      made++;
    }
    return made;
  });
}
