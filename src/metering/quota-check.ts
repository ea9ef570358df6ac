import { QuotaError } from '../errors.ts';
import { CONNECTION_QUOTAS, PERIOD_QUOTAS, type QuotaName, type Quotas } from '../quotas.ts';
import type { UsageMetric } from './metrics.ts';

/** What a database has used: month-to-date sums, its latest storage. */
export interface UsageStanding {
  monthToDate: Partial<Record<UsageMetric, number>>;
  storageBytes: number;
}

/** The stored metric each period quota limits, and how a limit reads to a user. */
export const PERIOD_METRIC: Record<(typeof PERIOD_QUOTAS)[number], { metric: UsageMetric; scale: number }> = {
  compute_time_seconds: { metric: 'compute_time_ms', scale: 1000 },
  /** The size held × running time (a compute that scaled up uses it faster). */
  compute_unit_seconds: { metric: 'compute_unit_ms', scale: 1000 },
  data_transfer_bytes: { metric: 'data_transfer_bytes', scale: 1 },
  written_data_bytes: { metric: 'written_data_bytes', scale: 1 },
};

const exceeded = (name: QuotaName, limit: number, what: string, sqlstate?: string) =>
  new QuotaError(`quota exceeded: ${name} ${what} of ${limit} is used up; raise the database's quota to continue`, sqlstate, { name, limit });

/**
 * The first quota the standing breaks, if any (connection quotas aside: see connectionsOver).
 * Period quotas count the current calendar month (UTC).
 */
export function brokenQuota(quotas: Quotas, standing: UsageStanding, quotaNames: readonly QuotaName[] = Object.keys(quotas) as QuotaName[]): QuotaError | undefined {
  for (const name of quotaNames) {
    const limit = quotas[name];
    if (limit === null || limit === undefined || (CONNECTION_QUOTAS as readonly string[]).includes(name)) continue;
    if (name === 'storage_bytes') {
      if (standing.storageBytes >= limit) return exceeded(name, limit, 'limit');
    } else {
      const { metric, scale } = PERIOD_METRIC[name as (typeof PERIOD_QUOTAS)[number]];
      if ((standing.monthToDate[metric] ?? 0) >= limit * scale) return exceeded(name, limit, 'monthly limit');
    }
  }
  return undefined;
}

/**
 * The connection quota that `open` client connections of a database (the new one included)
 * break: max_connections (null = unlimited), or max_client_connections (null = `defaultClientCap`).
 */
export function connectionsOver(quotas: Quotas, open: number, defaultClientCap: number): QuotaError | undefined {
  const own = quotas.max_connections;
  if (own !== null && own !== undefined && open > own) return exceeded('max_connections', own, 'limit', '53300');
  const cap = quotas.max_client_connections ?? defaultClientCap;
  if (open > cap) {
    return new QuotaError(`too many client connections to this database: max_client_connections is ${cap}; raise the database's quota to allow more`,
      '53300', { name: 'max_client_connections', limit: cap });
  }
  return undefined;
}
