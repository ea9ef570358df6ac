import type { Events } from '../events/events.ts';
import type { Logger } from '../log.ts';
import { PERIOD_QUOTAS, type QuotaName, type Quotas } from '../quotas.ts';
import { monthOf } from './hours.ts';
import { PERIOD_METRIC, type UsageStanding } from './quota-check.ts';

/** Used at this share of a quota, a partner hears quota.warning. */
const WARNING_SHARE = 0.8;

export interface QuotaLevel {
  name: QuotaName;
  limit: number;
  used: number;
  level: 'warning' | 'exceeded';
}

/** The monthly and storage quotas a standing has reached 80% (warning) or 100% (exceeded) of. */
export function quotaLevels(quotas: Quotas, standing: UsageStanding): QuotaLevel[] {
  const out: QuotaLevel[] = [];
  for (const name of [...PERIOD_QUOTAS, 'storage_bytes'] as const) {
    const limit = quotas[name];
    if (limit === null || limit === undefined) continue;
    const used = name === 'storage_bytes'
      ? standing.storageBytes
      : (standing.monthToDate[PERIOD_METRIC[name].metric] ?? 0) / PERIOD_METRIC[name].scale;
    if (used >= limit) out.push({ name, limit, used, level: 'exceeded' });
    else if (used >= limit * WARNING_SHARE) out.push({ name, limit, used, level: 'warning' });
  }
  return out;
}

/**
 * quota.warning and quota.exceeded, once per database, quota, limit and month: the event id says
 * which, so however many gateways see it, the catalog records it once (and a raised limit may warn again).
 */
export class QuotaEvents {
  private readonly seen = new Set<string>();

  constructor(private readonly events: Events, private readonly log: Logger) {}

  note(owner: { partnerId: string; databaseId: string }, quotas: Quotas, standing: UsageStanding, now = Date.now()): void {
    const month = new Date(monthOf(now)).toISOString().slice(0, 7);
    for (const q of quotaLevels(quotas, standing)) {
      const id = `evt_quota_${owner.databaseId}_${q.name}_${q.limit}_${month}_${q.level}`;
      if (this.seen.has(id)) continue;
      if (this.seen.size > 100_000) this.seen.clear();
      this.seen.add(id);
      this.events.record({
        id, type: q.level === 'warning' ? 'quota.warning' : 'quota.exceeded', partnerId: owner.partnerId, databaseId: owner.databaseId,
        data: { quota: q.name, limit: q.limit, used: q.used, month, share: Math.round((q.used / Math.max(q.limit, 1)) * 1000) / 1000 },
      }).catch((err) => {
        this.seen.delete(id);
        this.log.warn({ err: String(err), database: owner.databaseId }, 'could not record a quota event; the next check tries again');
      });
    }
  }
}
