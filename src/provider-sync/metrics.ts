import { Counter, Gauge, type Registry } from 'prom-client';
import type { Catalog } from '../catalog/catalog.ts';

/**
 * What an operator watches to know that pgfleet and its providers agree: deletions still owed,
 * orphans found and deleted, databases whose resource is gone, creates finished after a crash.
 */
export class SyncMetrics {
  readonly deletionFailures: Counter<'region'>;
  readonly orphansFound: Gauge<'region'>;
  readonly orphansDeleted: Counter<'region'>;
  readonly missingFound: Counter<'region'>;
  readonly createsResumed: Counter<'region'>;
  readonly reconcileRuns: Counter<'region' | 'outcome'>;

  constructor(registry: Registry, catalog: Catalog) {
    const registers = [registry];
    new Gauge({
      name: 'pgfleet_provider_deletions_pending', help: 'Deleted databases whose provider resources are not yet confirmed gone', registers,
      async collect() {
        const { rows } = await catalog.query('SELECT count(*)::int AS n FROM provider_deletions');
        this.set(rows[0].n);
      },
    });
    new Gauge({
      name: 'pgfleet_databases_failed', help: 'Databases not served because their provider resource is gone', registers,
      async collect() {
        const { rows } = await catalog.query(`SELECT count(*)::int AS n FROM databases WHERE status = 'failed'`);
        this.set(rows[0].n);
      },
    });
    this.deletionFailures = new Counter({
      name: 'pgfleet_provider_deletion_failures_total', help: 'Failed attempts to delete provider resources (each is retried)', labelNames: ['region'], registers,
    });
    this.orphansFound = new Gauge({
      name: 'pgfleet_provider_orphans', help: 'Provider resources pgfleet made that no catalog database claims, at the last reconciliation', labelNames: ['region'], registers,
    });
    this.orphansDeleted = new Counter({
      name: 'pgfleet_provider_orphans_deleted_total', help: 'Orphaned provider resources deleted after their grace period', labelNames: ['region'], registers,
    });
    this.missingFound = new Counter({
      name: 'pgfleet_provider_missing_total', help: 'Databases marked failed because reconciliation found their provider resource gone', labelNames: ['region'], registers,
    });
    this.createsResumed = new Counter({
      name: 'pgfleet_provider_creates_resumed_total', help: 'Creates left unfinished (a crash) that reconciliation finished', labelNames: ['region'], registers,
    });
    this.reconcileRuns = new Counter({
      name: 'pgfleet_provider_reconcile_runs_total', help: 'Reconciliation passes by region and outcome', labelNames: ['region', 'outcome'], registers,
    });
  }
}
