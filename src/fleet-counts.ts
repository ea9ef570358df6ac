import type { Catalog } from './catalog/catalog.ts';
import type { ComputeManager } from './computes.ts';
import type { OperatorMetrics } from './metrics.ts';

/** Fleet-wide counts for the operator: the catalog's totals beside this gateway's /metrics counters. */
export interface FleetCounts {
  partners: number;
  databases: number;
  databases_by_partner: Record<string, number>;
  /** Computes starting or running on this gateway (pgfleet_computes_active). */
  computes_active: number;
  /** pgfleet_compute_wakes_total by outcome. */
  wakes_total: Record<string, number>;
  /** pgfleet_proxy_auth_failures_total, all reasons. */
  auth_failures_total: number;
  /** pgfleet_proxy_connections_total by outcome. */
  connections_total: Record<string, number>;
  /** When this gateway's counters started (the process start). */
  counters_since: string;
}

const startedAt = new Date(Date.now() - process.uptime() * 1000);

async function byLabel(metric: { get(): Promise<{ values: { value: number; labels: Record<string, string | number | undefined> }[] }> }, label: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await metric.get()).values) out[String(v.labels[label])] = (out[String(v.labels[label])] ?? 0) + v.value;
  return out;
}

export async function fleetCounts(catalog: Catalog, computes: ComputeManager, metrics: OperatorMetrics): Promise<FleetCounts> {
  const [partners, databases, wakes, authFailures, connections] = await Promise.all([
    catalog.query<{ n: number }>('SELECT count(*)::int AS n FROM partners'),
    catalog.query<{ partner_id: string; n: number }>('SELECT partner_id, count(*)::int AS n FROM databases GROUP BY partner_id'),
    byLabel(metrics.wakes, 'outcome'),
    byLabel(metrics.authFailures, 'reason'),
    byLabel(metrics.connections, 'outcome'),
  ]);
  const databasesByPartner = Object.fromEntries(databases.rows.map((r) => [r.partner_id, r.n]));
  return {
    partners: partners.rows[0]!.n,
    databases: databases.rows.reduce((sum, r) => sum + r.n, 0),
    databases_by_partner: databasesByPartner,
    computes_active: computes.activeCount,
    wakes_total: { ok: wakes.ok ?? 0, failed: wakes.failed ?? 0 },
    auth_failures_total: Object.values(authFailures).reduce((a, b) => a + b, 0),
    connections_total: connections,
    counters_since: startedAt.toISOString(),
  };
}
