import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ComputeManager } from './computes.ts';

/**
 * Operator metrics at GET /metrics: low cardinality (no per-database labels; billing reads those
 * from /metrics/usage). The doors count into these; compute wakes are counted here from the manager.
 */
/** One registry's metrics as JSON, as a worker sends them. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly connections = new Counter({
    name: 'pgfleet_proxy_connections_total', help: 'Client connections by outcome', labelNames: ['outcome'] as const, registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'pgfleet_proxy_auth_failures_total', help: 'Failed authentications by reason', labelNames: ['reason'] as const, registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'pgfleet_proxy_bytes_total', help: 'Bytes relayed, by direction', labelNames: ['direction'] as const, registers: [this.registry],
  });
  readonly backends = new Counter({
    name: 'pgfleet_proxy_backends_total', help: 'Backends of direct sessions: started for the session (new) or kept from an earlier client (warm)',
    labelNames: ['kind'] as const, registers: [this.registry],
  });
  readonly wakes = new Counter({
    name: 'pgfleet_compute_wakes_total', help: 'Compute starts by outcome', labelNames: ['outcome'] as const, registers: [this.registry],
  });
  readonly wakeSeconds = new Histogram({
    name: 'pgfleet_compute_wake_duration_seconds', help: 'Time from wake to a compute accepting connections',
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
  });
  readonly webhookAttempts = new Counter({
    name: 'pgfleet_webhook_attempts_total', help: 'Webhook delivery attempts by outcome (ok: a 2xx answer)', labelNames: ['outcome'] as const, registers: [this.registry],
  });
  readonly apiSeconds = new Histogram({
    name: 'pgfleet_api_request_duration_seconds', help: 'API latency by route and status',
    labelNames: ['method', 'route', 'status'] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [this.registry],
  });

  readonly scalings = new Counter({
    name: 'pgfleet_compute_scalings_total', help: 'Size changes of running local computes, by direction and reason (cpu_throttled, memory_limit, quiet, range)',
    labelNames: ['direction', 'reason'] as const, registers: [this.registry],
  });
  readonly scalerCpuSeconds = new Counter({
    name: 'pgfleet_scaler_cpu_seconds_total', help: "CPU time the scaler spent sampling computes' cgroups", registers: [this.registry],
  });

  /** Proxy workers' metrics (the primary of `pgfleet start` with PGFLEET_WORKERS): each worker's registry as JSON. */
  private workers: (() => Promise<MetricsJson[]>) | undefined;

  /** From now on, /metrics answers for the worker processes too (their series labelled `worker`). */
  gatherWorkers(count: () => number, fetch: () => Promise<MetricsJson[]>): void {
    this.workers = fetch;
    new Gauge({
      name: 'pgfleet_workers', help: 'Proxy worker processes running', registers: [this.registry],
      collect() {
        this.set(count());
      },
    });
  }

  /** The text /metrics answers: this process's registry, summed with its workers' by AggregatorRegistry. */
  async text(): Promise<string> {
    if (!this.workers) return this.registry.metrics();
    const all = [await this.registry.getMetricsAsJSON(), ...await this.workers()];
    return AggregatorRegistry.aggregate(all).metrics();
  }

  constructor(computes: ComputeManager) {
    // Event-loop lag sampled every 100 ms, not prom-client's 10: its timer is what wakes an idle gateway most.
    collectDefaultMetrics({ register: this.registry, prefix: 'pgfleet_', eventLoopMonitoringPrecision: 100 });
    new Gauge({
      name: 'pgfleet_computes_active', help: 'Computes starting or running', registers: [this.registry],
      collect() {
        this.set(computes.activeCount);
      },
    });
    computes.on('wake', (_branchId: string, ms: number, ok: boolean) => {
      this.wakes.inc({ outcome: ok ? 'ok' : 'failed' });
      if (ok) this.wakeSeconds.observe(ms / 1000);
    });
  }
}
