import type pg from 'pg';
import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.ts';
import type { BranchRef } from '../providers/provider.ts';
import type { Regions } from '../regions.ts';
import type { SyncMetrics } from './metrics.ts';
import { Periodic } from '../periodic.ts';

/** A deleted database whose provider resources are not yet confirmed gone. */
export interface PendingDeletion {
  databaseId: string;
  partnerId: string;
  region: string;
  attempts: number;
  lastError: string | null;
  nextAttemptAt: Date;
  createdAt: Date;
}

// Backoff between attempts: 2 s, 4 s, … up to 5 minutes.
const backoffSeconds = (attempts: number) => Math.min(300, 2 ** Math.min(attempts, 9));

/**
 * Records, inside the transaction that deletes the database's rows, that the provider resources of
 * its branches must go too: `refs` in the order to delete them (children first).
 */
export async function recordDeletion(c: pg.PoolClient, databaseId: string, region: string, partnerId: string, refs: BranchRef[]): Promise<void> {
  await c.query(
    `INSERT INTO provider_deletions (database_id, partner_id, region, refs) VALUES ($1, $2, $3, $4)
     ON CONFLICT (database_id) DO NOTHING`,
    [databaseId, partnerId, region, JSON.stringify(refs)],
  );
}

/**
 * Deletion of provider resources (a Neon project, a local data directory) that outlives its
 * first failure: each deleted database leaves a row in provider_deletions until its provider
 * confirmed the delete; failed attempts are retried in the background with backoff, by
 * whichever gateway takes the row first (SKIP LOCKED), and counted in metrics.
 */
export class ProviderDeletions {
  private readonly retries = new Periodic(() => this.retryDue(), (err) => this.log.warn({ err: err.message }, 'retrying provider deletions failed'));

  constructor(
    private readonly catalog: Catalog,
    private readonly regions: Regions,
    private readonly metrics: SyncMetrics,
    private readonly log: Logger,
  ) {}

  /** Tries to delete one database's resources now; true when they are gone (or were already). */
  async attempt(databaseId: string): Promise<boolean> {
    return this.catalog.tx(async (c) => {
      const { rows } = await c.query('SELECT * FROM provider_deletions WHERE database_id = $1 FOR UPDATE SKIP LOCKED', [databaseId]);
      return rows[0] ? this.run(c, rows[0]) : false;
    });
  }

  private async run(c: pg.PoolClient, row: any): Promise<boolean> {
    try {
      // Each delete is idempotent (a resource already gone is fine): a retry runs them all again.
      const provider = this.regions.get(row.region).provider;
      for (const ref of row.refs as BranchRef[]) await provider.delete(ref);
      await c.query('DELETE FROM provider_deletions WHERE database_id = $1', [row.database_id]);
      if (row.attempts > 0) this.log.info({ database: row.database_id, attempts: row.attempts + 1 }, 'provider resources deleted after retries');
      return true;
    } catch (err) {
      const message = (err as Error).message;
      this.metrics.deletionFailures.inc({ region: row.region });
      this.log.warn({ database: row.database_id, region: row.region, attempts: row.attempts + 1, err: message }, 'could not delete provider resources; will retry');
      await c.query(
        `UPDATE provider_deletions SET attempts = attempts + 1, last_error = $2,
           next_attempt_at = clock_timestamp() + make_interval(secs => $3) WHERE database_id = $1`,
        [row.database_id, message, backoffSeconds(row.attempts + 1)],
      );
      return false;
    }
  }

  /** One attempt at each deletion that is due; returns how many finished and how many failed again. */
  async retryDue(): Promise<{ done: number; failed: number }> {
    const { rows } = await this.catalog.query('SELECT database_id FROM provider_deletions WHERE next_attempt_at <= clock_timestamp() ORDER BY next_attempt_at LIMIT 100');
    let done = 0;
    let failed = 0;
    for (const { database_id } of rows) {
      if (await this.attempt(database_id)) done++;
      else failed++;
    }
    return { done, failed };
  }

  async pending(): Promise<PendingDeletion[]> {
    const { rows } = await this.catalog.query('SELECT * FROM provider_deletions ORDER BY created_at, database_id');
    return rows.map((r) => ({
      databaseId: r.database_id, partnerId: r.partner_id, region: r.region, attempts: r.attempts, lastError: r.last_error,
      nextAttemptAt: r.next_attempt_at, createdAt: r.created_at,
    }));
  }

  /** Retries due deletions every intervalMs until stop(). */
  start(intervalMs: number): void {
    this.retries.start(intervalMs);
  }

  stop(): Promise<void> {
    return this.retries.stop();
  }
}
