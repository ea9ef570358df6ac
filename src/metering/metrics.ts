/**
 * The usage metrics, as stored in the catalog's usage table. Times are kept in milliseconds so that
 * nothing is lost to rounding; the consumption API shows seconds.
 */
export const USAGE_METRICS = {
  compute_time_ms: 'sum',
  active_time_ms: 'sum',
  /** Compute running time × its size in compute units (on Neon: its compute time, CPU seconds). */
  compute_unit_ms: 'sum',
  /** Bytes sent to clients (egress). */
  data_transfer_bytes: 'sum',
  /** Bytes received from clients, counted apart from egress. */
  ingress_bytes: 'sum',
  written_data_bytes: 'sum',
  /** The size of the branch's data: the latest sample in the bucket. */
  storage_bytes: 'last',
  connections: 'sum',
  /** Most concurrent connections in the bucket. */
  connections_peak: 'max',
} as const;

export type UsageMetric = keyof typeof USAGE_METRICS;
export type Aggregation = (typeof USAGE_METRICS)[UsageMetric];

/** Who a usage value belongs to. */
export interface UsageOwner {
  partnerId: string;
  databaseId: string;
  branchId: string;
}

/** A stored value as reports show it: `*_ms` metrics become `*_seconds`, the rest stay as they are. */
export function reported(metric: UsageMetric, value: number): { name: string; value: number } {
  return metric.endsWith('_ms') ? { name: metric.replace(/_ms$/, '_seconds'), value: value / 1000 } : { name: metric, value };
}
