import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.ts';
import type { RouteCache } from '../catalog/route-cache.ts';
import { branchRefOf, routeByDatabase } from '../catalog/routes.ts';
import type { Databases } from '../databases.ts';
import type { Events } from '../events/events.ts';
import type { Region, Regions } from '../regions.ts';
import type { PendingDeletion, ProviderDeletions } from './deletions.ts';
import type { SyncMetrics } from './metrics.ts';
import { Periodic } from '../periodic.ts';

export interface ReconcileOptions {
  /** An orphan is deleted once reconciliation has seen it for this long. */
  orphanGraceMs: number;
  /** A create still unfinished after this long was abandoned by its gateway (killed), and is finished here. */
  abandonedCreateMs: number;
  /** Where database.ready (a create finished here) and database.failed are recorded. */
  events: Events;
}

export interface OrphanReport {
  resourceId: string;
  /** The database it was made for (its name), which the catalog does not know. */
  databaseId: string;
  firstSeenAt: Date;
  deleted: boolean;
}

export interface RegionReport {
  region: string;
  provider: string;
  /** Resources pgfleet made that the provider listed. */
  resources: number;
  orphans: OrphanReport[];
  /** Databases marked failed in this pass: their resource is gone. */
  missing: { databaseId: string; detail: string }[];
  /** Databases whose unfinished create this pass finished. */
  resumed: string[];
  /** What went wrong, when the pass could not finish for this region. */
  error?: string;
}

export interface ReconcileReport {
  regions: RegionReport[];
  /** Every database marked failed, this pass or earlier. */
  failed: { databaseId: string; region: string; detail: string | null }[];
  pendingDeletions: PendingDeletion[];
}

// Any constant the gateways agree on: one pass at a time over a shared catalog.
const RECONCILE_LOCK = 0x70676632;

/**
 * Keeps the catalog and each provider's own records in step. Per region: creates a killed gateway
 * left unfinished are finished (the provider adopts what the first attempt made); resources
 * pgfleet made that no database claims (orphans) are reported and, after a grace period, deleted;
 * ready databases whose resource is gone are marked failed, so they are not served as healthy.
 */
export class Reconciler {
  /** What the next pass does beyond the usual: the first may resume every unfinished create. */
  private nextPass: { resumeAllCreates?: boolean } = {};
  private readonly passes = new Periodic(() => {
    const opts = this.nextPass;
    this.nextPass = {};
    return this.run(opts);
  }, (err) => this.log.warn({ err: err.message }, 'reconciliation pass failed'));

  constructor(
    private readonly catalog: Catalog,
    /** Told when a database's status changes here. */
    private readonly routes: RouteCache,
    private readonly regions: Regions,
    private readonly databases: Databases,
    private readonly deletions: ProviderDeletions,
    private readonly metrics: SyncMetrics,
    private readonly log: Logger,
    private readonly opts: ReconcileOptions,
  ) {}

  /**
   * One pass over every region; another gateway's pass in progress makes this one wait for it.
   * `resumeAllCreates`: every unfinished create is abandoned (this gateway alone uses the catalog and just started).
   */
  async run(opts: { resumeAllCreates?: boolean } = {}): Promise<ReconcileReport> {
    return this.catalog.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [RECONCILE_LOCK]);
      const regions: RegionReport[] = [];
      for (const id of this.regions.ids) regions.push(await this.region(this.regions.get(id), opts.resumeAllCreates === true));
      const { rows } = await this.catalog.query(`SELECT id, region, status_detail FROM databases WHERE status = 'failed' ORDER BY status_at, id`);
      return {
        regions,
        failed: rows.map((r) => ({ databaseId: r.id, region: r.region, detail: r.status_detail })),
        pendingDeletions: await this.deletions.pending(),
      };
    });
  }

  private async region(region: Region, resumeAll: boolean): Promise<RegionReport> {
    const report: RegionReport = { region: region.id, provider: region.provider.name, resources: 0, orphans: [], missing: [], resumed: [] };
    try {
      report.resumed = await this.resumeCreates(region, resumeAll);
      if (region.provider.listResources) await this.compare(region, report);
      this.metrics.reconcileRuns.inc({ region: region.id, outcome: 'ok' });
    } catch (err) {
      report.error = (err as Error).message;
      this.metrics.reconcileRuns.inc({ region: region.id, outcome: 'failed' });
      this.log.warn({ region: region.id, err: report.error }, 'reconciliation failed for a region');
    }
    return report;
  }

  private async resumeCreates(region: Region, all: boolean): Promise<string[]> {
    const { rows } = await this.catalog.query(
      `SELECT id FROM databases WHERE region = $1 AND status = 'creating'
         AND ($2 OR status_at < clock_timestamp() - make_interval(secs => $3)) ORDER BY status_at`,
      [region.id, all, this.opts.abandonedCreateMs / 1000],
    );
    const resumed: string[] = [];
    for (const { id } of rows) {
      try {
        await this.databases.resumeCreate(id);
        resumed.push(id);
        const route = await routeByDatabase(this.catalog, id);
        if (route) await this.opts.events.recordAfter({ type: 'database.ready', partnerId: route.partnerId, databaseId: id, data: { region: region.id, resumed: true } });
        this.metrics.createsResumed.inc({ region: region.id });
        this.log.info({ database: id, region: region.id }, 'finished a create its gateway left unfinished');
      } catch (err) {
        const message = (err as Error).message;
        await this.catalog.query(`UPDATE databases SET status_detail = $2 WHERE id = $1 AND status = 'creating'`, [id, `the create is unfinished: ${message}`]);
        await this.routes.changed(id);
        this.log.warn({ database: id, region: region.id, err: message }, 'could not finish an abandoned create; the next pass tries again');
      }
    }
    return resumed;
  }

  private async compare(region: Region, report: RegionReport): Promise<void> {
    const provider = region.provider;
    // List first, then read the catalog: a database created meanwhile is in the catalog already.
    const { resources, unavailable } = await provider.listResources!();
    report.resources = resources.length;
    const { rows: known } = await this.catalog.query(
      `SELECT id, status FROM databases WHERE region = $1
       UNION ALL SELECT database_id, 'deleting' FROM provider_deletions WHERE region = $1`,
      [region.id],
    );
    const status = new Map<string, string>(known.map((r) => [r.id, r.status]));
    const listed = new Set(resources.map((r) => r.databaseId));

    const orphans = resources.filter((r) => !status.has(r.databaseId) && !unavailable.includes(r.id));
    await this.catalog.query(
      `DELETE FROM provider_orphans WHERE region = $1 AND NOT (resource_id = ANY($2::text[]))`,
      [region.id, orphans.map((o) => o.id)],
    );
    for (const orphan of orphans) {
      const { rows } = await this.catalog.query(
        `INSERT INTO provider_orphans (region, resource_id, database_id) VALUES ($1, $2, $3)
         ON CONFLICT (region, resource_id) DO UPDATE SET last_seen_at = clock_timestamp()
         RETURNING first_seen_at, first_seen_at <= clock_timestamp() - make_interval(secs => $4) AS due`,
        [region.id, orphan.id, orphan.databaseId, this.opts.orphanGraceMs / 1000],
      );
      const entry: OrphanReport = { resourceId: orphan.id, databaseId: orphan.databaseId, firstSeenAt: rows[0].first_seen_at, deleted: false };
      if (rows[0].due) {
        try {
          await provider.deleteResource!(orphan.id);
          await this.catalog.query('DELETE FROM provider_orphans WHERE region = $1 AND resource_id = $2', [region.id, orphan.id]);
          entry.deleted = true;
          this.metrics.orphansDeleted.inc({ region: region.id });
          this.log.warn({ region: region.id, resource: orphan.id, database: orphan.databaseId }, 'deleted an orphaned provider resource');
        } catch (err) {
          this.log.warn({ region: region.id, resource: orphan.id, err: (err as Error).message }, 'could not delete an orphaned provider resource');
        }
      } else {
        this.log.warn({ region: region.id, resource: orphan.id, database: orphan.databaseId }, 'provider resource unknown to the catalog (deleted after the grace period)');
      }
      report.orphans.push(entry);
    }
    this.metrics.orphansFound.set({ region: region.id }, report.orphans.filter((o) => !o.deleted).length);

    // Ready databases the listing lacks: ask about each (a listing can be incomplete) before marking it failed.
    for (const [databaseId, s] of status) {
      if (s !== 'ready' || listed.has(databaseId)) continue;
      const route = await routeByDatabase(this.catalog, databaseId);
      if (!route || !provider.missingResource) continue;
      const gone = await provider.missingResource(branchRefOf(route));
      if (!gone) continue;
      const detail = `${gone} (found by reconciliation at ${new Date().toISOString()}); delete the database to release it`;
      const marked = await this.catalog.tx(async (c) => {
        const { rowCount } = await c.query(
          `UPDATE databases SET status = 'failed', status_detail = $2, status_at = clock_timestamp() WHERE id = $1 AND status = 'ready'`,
          [databaseId, detail],
        );
        if (rowCount) await this.opts.events.record({ type: 'database.failed', partnerId: route.partnerId, databaseId, data: { region: region.id, error: detail } }, c);
        return rowCount;
      });
      if (!marked) continue;
      await this.routes.changed(databaseId);
      report.missing.push({ databaseId, detail });
      this.metrics.missingFound.inc({ region: region.id });
      this.log.error({ region: region.id, database: databaseId, detail }, 'database marked failed: its provider resource is gone');
    }
  }

  /** A pass now, then every intervalMs (0: none after the first) until stop(). */
  start(intervalMs: number, first: { resumeAllCreates?: boolean } = {}): void {
    this.nextPass = first;
    this.passes.runNow();
    if (intervalMs > 0) this.passes.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.passes.stop();
  }
}
