import { Counter, Gauge, type Registry } from 'prom-client';

/** What the local provider tells the metrics of its store. */
export interface StorageGauges {
  /** Seconds the oldest WAL not yet in the store has waited, over the running computes (0: all stored). */
  lagSeconds(): number;
  /** Async computes whose WAL passed PGFLEET_STORAGE_MAX_BACKLOG here: their commits wait for the store. */
  backlogged(): number;
}

/** The store as an operator watches it: how far behind the WAL is, failures, evictions and rehydrations. */
export class StorageMetrics {
  readonly uploadFailures: Counter<string>;
  readonly evictions: Counter<string>;
  readonly rehydrations: Counter<'from'>;

  constructor(registry: Registry, gauges: StorageGauges) {
    this.uploadFailures = new Counter({ name: 'pgfleet_storage_upload_failures_total', help: 'WAL uploads to the store that failed (retried)', registers: [registry] });
    this.evictions = new Counter({ name: 'pgfleet_storage_evictions_total', help: 'Branches whose local files were evicted (the store holds them)', registers: [registry] });
    this.rehydrations = new Counter({
      name: 'pgfleet_storage_rehydrations_total', help: 'Branches brought back from the store: from a base backup at their end, or recovered onto a new timeline',
      labelNames: ['from'] as const, registers: [registry],
    });
    new Gauge({
      name: 'pgfleet_storage_wal_lag_seconds', help: 'Age of the oldest WAL of a running compute not yet in the store (the async RPO now)', registers: [registry],
      collect() {
        this.set(gauges.lagSeconds());
      },
    });
    new Gauge({
      name: 'pgfleet_storage_backlogged_computes', help: 'Async computes whose WAL waiting on this node passed PGFLEET_STORAGE_MAX_BACKLOG (their commits wait for the store)',
      registers: [registry],
      collect() {
        this.set(gauges.backlogged());
      },
    });
  }
}
