import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.ts';
import { type BranchRoute, routeByBranch } from '../catalog/routes.ts';
import type { Events } from '../events/events.ts';
import type { GatewayTokens } from '../jwt/gateway-tokens.ts';
import { type ApplyOutcome, type ProxyDoor, applyMigration } from './apply.ts';
import type { MigrationKeys } from './migration-keys.ts';

export interface RunnerOptions {
  catalog: Catalog;
  tokens: GatewayTokens;
  keys: MigrationKeys;
  events: Events;
  /** This gateway: the holder of the jobs it runs. */
  nodeId: string;
  /** How long a claim on a job lasts unless renewed (PGFLEET_MIGRATION_LEASE); a gateway gone lets it lapse. */
  leaseMs: number;
  /** Whether the branch's compute runs now (then the job leaves it running). */
  isRunning(route: BranchRoute): Promise<boolean>;
  /**
   * Suspends a compute the job woke, unless a client uses it meanwhile: resolves once it no longer
   * runs (it is stopping), with `stopped` for the end of its stop.
   */
  suspend(route: BranchRoute): Promise<{ stopped: Promise<void> }>;
  log: Logger;
}

interface Claimed {
  id: string;
  partner_id: string;
  name: string;
  sql: string;
  concurrency: number;
  max_failures: number | null;
  dry_run: boolean;
}

interface PendingTarget {
  branch_id: string;
  database_id: string;
}

const TOKEN_TTL_SECONDS = 600;
/** Waits before each new attempt at a database whose session could not start (its node restarting, say): about 45 s in all. */
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15_000, 15_000];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs migration jobs: each gateway claims one runnable job at a time with a lease it renews (the
 * same shape as the webhook dispatcher's), so a job runs on one gateway; a gateway that dies lets
 * the lease lapse and another (or itself, restarted: the same node id) takes the job back where
 * it was: the databases still pending. A database the migration reached before the crash has the
 * record in its own transaction, so it is never applied twice.
 */
export class MigrationRunner {
  private door: ProxyDoor | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** Where the job under way keeps the stops of the computes it woke. */
  private stopsOf: (stopped: Promise<void>) => Promise<void> = (stopped) => stopped;

  constructor(private readonly opts: RunnerOptions) {}

  /** Starts taking jobs, once the proxy it connects through listens. */
  start(door: ProxyDoor, pollMs: number): void {
    this.door = door;
    this.timer = setInterval(() => this.runNow(), pollMs);
    this.timer.unref();
    this.runNow();
  }

  runNow(): void {
    if (!this.door || this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((err) => this.opts.log.warn({ err: String(err) }, 'migration runner pass failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.runNow();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  private async pass(): Promise<void> {
    for (let job = await this.claim(); job && !this.stopped; job = await this.claim()) await this.run(job);
  }

  private async claim(): Promise<Claimed | undefined> {
    const { rows } = await this.opts.catalog.query<Claimed>(
      `UPDATE migration_jobs SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond',
              state = 'running', started_at = COALESCE(started_at, now())
        WHERE id = (SELECT id FROM migration_jobs WHERE state IN ('pending', 'running')
                       AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $1)
                     ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id, partner_id, name, sql, concurrency, max_failures, dry_run`, [this.opts.nodeId, this.opts.leaseMs]);
    return rows[0];
  }

  /** Renews the lease; false when the job is no longer this gateway's to run (paused, cancelled, taken). */
  private async renew(id: string): Promise<boolean> {
    const { rows } = await this.opts.catalog.query(
      `UPDATE migration_jobs SET lease_until = now() + $3 * interval '1 millisecond' WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING 1`,
      [id, this.opts.nodeId, this.opts.leaseMs]);
    return rows.length > 0;
  }

  private async run(job: Claimed): Promise<void> {
    const log = this.opts.log.child({ migration: job.id });
    const { rows: pending } = await this.opts.catalog.query<PendingTarget>(
      `SELECT branch_id, database_id FROM migration_targets WHERE job_id = $1 AND state = 'pending' ORDER BY seq`, [job.id]);
    const { rows: [{ failed }] } = await this.opts.catalog.query<{ failed: number }>(
      `SELECT count(*)::int AS failed FROM migration_targets WHERE job_id = $1 AND state = 'failed'`, [job.id]);
    let failures = failed;
    let next = 0;
    // Stops of computes the job woke go on while the next databases start; at most `concurrency` at once.
    const stops = new Set<Promise<void>>();
    this.stopsOf = async (stopped: Promise<void>) => {
      const p = stopped.catch((err) => log.warn({ err: String(err) }, 'could not suspend a compute a migration woke')).finally(() => stops.delete(p));
      stops.add(p);
      while (stops.size >= job.concurrency) await Promise.race(stops);
    };
    let go = true;
    log.info({ pending: pending.length, failed }, 'running a migration');
    const renewal = setInterval(() => {
      void this.renew(job.id).then((mine) => (go &&= mine), () => {});
    }, Math.max(100, this.opts.leaseMs / 3));
    const stopAt = async (): Promise<boolean> => {
      if (job.max_failures === null || failures < job.max_failures) return false;
      await this.opts.catalog.query(
        `UPDATE migration_jobs SET state = 'failed', state_detail = $2, finished_at = now(), lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'running'`,
        [job.id, `stopped after ${failures} failed databases (max_failures ${job.max_failures})`]);
      return true;
    };
    const worker = async () => {
      while (go && !this.stopped && next < pending.length) {
        // Each database begins with the lease renewed: a pause or cancel stops the job within one database's time.
        if (!(await this.renew(job.id))) {
          go = false;
          break;
        }
        if (next >= pending.length) break;
        const target = pending[next++];
        let outcome = await this.attempt(job, target);
        for (const delay of RETRY_DELAYS_MS) {
          if (outcome.state !== 'failed' || !outcome.retry || !go || this.stopped) break;
          log.info({ database: target.database_id, err: outcome.error }, 'a migration session could not start; trying again');
          await sleep(delay);
          outcome = await this.attempt(job, target);
        }
        // Paused, cancelled or stopping while it waited to try again: it stays pending.
        if (outcome.state === 'failed' && outcome.retry && (!go || this.stopped)) continue;
        await this.opts.catalog.query(
          `UPDATE migration_targets SET state = $3, duration_ms = $4, error = $5, sqlstate = $6, reason = $7, updated_at = now() WHERE job_id = $1 AND branch_id = $2`,
          [job.id, target.branch_id, outcome.state, 'durationMs' in outcome ? outcome.durationMs : null,
            outcome.state === 'failed' ? outcome.error : null, outcome.state === 'failed' ? outcome.sqlstate : null, outcome.state === 'skipped' ? outcome.reason : null]);
        if (outcome.state === 'failed') {
          failures++;
          if (go && (await stopAt())) go = false;
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(job.concurrency, pending.length) }, worker));
    } finally {
      clearInterval(renewal);
      await Promise.all(stops);
    }
    await this.settle(job, log);
  }

  /** After a pass: finished when nothing is pending; else the lease is let go (paused, cancelled, or this gateway stopping). */
  private async settle(job: Claimed, log: Logger): Promise<void> {
    const { rows } = await this.opts.catalog.query<{ state: string; pending: number; failed: number; applied: number; skipped: number }>(
      `WITH done AS (
         UPDATE migration_jobs j SET state = 'finished', finished_at = now() WHERE id = $1 AND state = 'running' AND lease_owner = $2
            AND NOT EXISTS (SELECT 1 FROM migration_targets t WHERE t.job_id = j.id AND t.state = 'pending') RETURNING state)
       SELECT COALESCE((SELECT state FROM done), j.state) AS state,
              (count(*) FILTER (WHERE t.state = 'pending'))::int AS pending, (count(*) FILTER (WHERE t.state = 'failed'))::int AS failed,
              (count(*) FILTER (WHERE t.state = 'applied'))::int AS applied, (count(*) FILTER (WHERE t.state = 'skipped'))::int AS skipped
         FROM migration_jobs j LEFT JOIN migration_targets t ON t.job_id = j.id WHERE j.id = $1 GROUP BY j.state`, [job.id, this.opts.nodeId]);
    await this.opts.catalog.query(`UPDATE migration_jobs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2`, [job.id, this.opts.nodeId]);
    const r = rows[0];
    if (!r) return;
    log.info({ state: r.state, applied: r.applied, failed: r.failed, skipped: r.skipped, pending: r.pending }, 'migration pass ended');
    if (r.state === 'finished' || r.state === 'failed') {
      await this.opts.events.recordAfter({
        type: r.state === 'finished' ? 'migration.finished' : 'migration.failed', partnerId: job.partner_id, id: `${job.id}:${r.state}`,
        data: { migration_id: job.id, name: job.name, dry_run: job.dry_run, applied: r.applied, failed: r.failed, skipped: r.skipped, pending: r.pending },
      });
    }
  }

  private attempt(job: Claimed, target: PendingTarget): Promise<ApplyOutcome> {
    return this.one(job, target).catch((err): ApplyOutcome => ({ state: 'failed', error: String(err), sqlstate: null, durationMs: 0 }));
  }

  /** The migration on one branch: through the proxy as the owner, then a compute the job woke is suspended again. */
  private async one(job: Claimed, target: PendingTarget): Promise<ApplyOutcome> {
    const route = await routeByBranch(this.opts.catalog, target.branch_id);
    if (!route) return { state: 'skipped', reason: 'the database or branch was deleted' };
    if (route.status !== 'ready') return { state: 'skipped', reason: `the database is ${route.status}` };
    if (route.provider !== 'local') return { state: 'skipped', reason: `region "${route.region}" is served by ${route.provider}: migrations run on local regions` };
    const wasRunning = await this.opts.isRunning(route);
    const { token } = await this.opts.tokens.issue(
      { databaseId: route.databaseId, endpointId: route.endpointId, partnerId: route.partnerId, userId: route.userId, role: route.ownerRole }, TOKEN_TTL_SECONDS);
    const outcome = await applyMigration(this.door!, {
      endpointId: route.endpointId, databaseName: route.databaseName, role: route.ownerRole, token, jobId: job.id, name: job.name,
      sql: job.sql, dryRun: job.dry_run, proof: this.opts.keys.proof(route.databaseId, job.name),
    });
    if (!wasRunning) {
      const suspending = await this.opts.suspend(route).catch((err) => ({ stopped: Promise.reject(err) }));
      await this.stopsOf(suspending.stopped);
    }
    return outcome;
  }
}
