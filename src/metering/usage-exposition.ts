import { Counter, Gauge, Registry } from 'prom-client';
import type { Catalog } from '../catalog/catalog.ts';
import { usageTotals } from './consumption.ts';
import { USAGE_METRICS, type UsageMetric, reported } from './metrics.ts';
import type { UsageTracker } from './usage-tracker.ts';

/** The Prometheus name of a stored metric, in the unit reports use: amounts are counters (`_total`), levels gauges. */
const exposedName = (metric: UsageMetric) =>
  `pgfleet_usage_${reported(metric, 0).name}${USAGE_METRICS[metric] === 'sum' ? '_total' : ''}`;

/**
 * The per-database usage for billing (GET /metrics/usage): all-time totals, so every series only
 * grows, and only databases that have usage appear.
 */
export async function usageExposition(tracker: UsageTracker, catalog: Catalog): Promise<{ contentType: string; text: string }> {
  const registry = new Registry();
  const labelNames = ['partner_id', 'database_id'] as const;
  const series = new Map<UsageMetric, Counter<(typeof labelNames)[number]> | Gauge<(typeof labelNames)[number]>>();
  for (const metric of Object.keys(USAGE_METRICS) as UsageMetric[]) {
    const name = exposedName(metric);
    const help = `pgfleet usage: ${metric.replace(/_ms$/, ' (seconds)')} per database`;
    series.set(metric, USAGE_METRICS[metric] === 'sum'
      ? new Counter({ name, help, labelNames, registers: [registry] })
      : new Gauge({ name, help, labelNames, registers: [registry] }));
  }
  for (const row of await usageTotals(tracker, catalog)) {
    const metric = series.get(row.metric);
    if (!metric) continue;
    const labels = { partner_id: row.partner_id, database_id: row.database_id };
    const { value } = reported(row.metric, row.value);
    if (metric instanceof Counter) metric.inc(labels, value);
    else metric.set(labels, value);
  }
  return { contentType: registry.contentType, text: await registry.metrics() };
}
