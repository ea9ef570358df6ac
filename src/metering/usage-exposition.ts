import { Counter, Gauge, Registry } from 'prom-client';
import type { Catalog } from '../catalog/catalog.ts';
import { usageTotals } from './consumption.ts';
import { USAGE_METRICS, type UsageMetric } from './metrics.ts';
import type { UsageTracker } from './usage-tracker.ts';

/** Prometheus name and unit factor of each stored metric: amounts are counters, levels gauges. */
const EXPOSED: Record<UsageMetric, { name: string; factor: number }> = {
  compute_time_ms: { name: 'pgfleet_usage_compute_time_seconds_total', factor: 1 / 1000 },
  active_time_ms: { name: 'pgfleet_usage_active_time_seconds_total', factor: 1 / 1000 },
  data_transfer_bytes: { name: 'pgfleet_usage_data_transfer_bytes_total', factor: 1 },
  ingress_bytes: { name: 'pgfleet_usage_ingress_bytes_total', factor: 1 },
  written_data_bytes: { name: 'pgfleet_usage_written_data_bytes_total', factor: 1 },
  connections: { name: 'pgfleet_usage_connections_total', factor: 1 },
  storage_bytes: { name: 'pgfleet_usage_storage_bytes', factor: 1 },
  connections_peak: { name: 'pgfleet_usage_connections_peak', factor: 1 },
};

/**
 * The per-database usage for billing (GET /metrics/usage): all-time totals, so every series only
 * grows, and only databases that have usage appear.
 */
export async function usageExposition(tracker: UsageTracker, catalog: Catalog): Promise<{ contentType: string; text: string }> {
  const registry = new Registry();
  const labelNames = ['partner_id', 'database_id'] as const;
  const series = new Map<UsageMetric, Counter<(typeof labelNames)[number]> | Gauge<(typeof labelNames)[number]>>();
  for (const [metric, { name }] of Object.entries(EXPOSED) as [UsageMetric, { name: string }][]) {
    const help = `pgfleet usage: ${metric.replace(/_ms$/, ' (seconds)')} per database`;
    series.set(metric, USAGE_METRICS[metric] === 'sum'
      ? new Counter({ name, help, labelNames, registers: [registry] })
      : new Gauge({ name, help, labelNames, registers: [registry] }));
  }
  for (const row of await usageTotals(tracker, catalog)) {
    const metric = series.get(row.metric);
    if (!metric) continue;
    const labels = { partner_id: row.partner_id, database_id: row.database_id };
    const value = row.value * EXPOSED[row.metric].factor;
    if (metric instanceof Counter) metric.inc(labels, value);
    else metric.set(labels, value);
  }
  return { contentType: registry.contentType, text: await registry.metrics() };
}
