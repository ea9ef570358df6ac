import crypto from 'node:crypto';
import type { Catalog } from '../catalog/catalog.ts';
import type { Events } from '../events/events.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import { type MigrationSelector, resolveSelector, validateSelector } from './selector.ts';

export type JobState = 'pending' | 'running' | 'paused' | 'finished' | 'failed' | 'cancelled';
export type TargetState = 'pending' | 'applied' | 'failed' | 'skipped';

export interface NewMigration {
  name: string;
  sql: string;
  selector?: unknown;
  concurrency?: number;
  maxFailures?: number | null;
  dryRun?: boolean;
  branches?: boolean;
}

export interface MigrationJob {
  id: string;
  partnerId: string;
  name: string;
  sql: string;
  selector: MigrationSelector;
  concurrency: number;
  maxFailures: number | null;
  dryRun: boolean;
  branches: boolean;
  state: JobState;
  stateDetail: string | null;
  counts: Record<TargetState, number> & { total: number };
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export interface TargetReport {
  databaseId: string;
  branchId: string;
  branch: string;
  state: TargetState;
  durationMs: number | null;
  error: string | null;
  sqlstate: string | null;
  reason: string | null;
  updatedAt: Date;
}

export const MIGRATION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
export const DEFAULT_CONCURRENCY = 8;
export const MAX_CONCURRENCY = 64;
const MAX_SQL_BYTES = 1 << 20;
const ENDED: readonly JobState[] = ['finished', 'failed', 'cancelled'];

const toJob = (r: any): MigrationJob => ({
  id: r.id, partnerId: r.partner_id, name: r.name, sql: r.sql, selector: r.selector, concurrency: r.concurrency, maxFailures: r.max_failures,
  dryRun: r.dry_run, branches: r.branches, state: r.state, stateDetail: r.state_detail,
  counts: { total: r.total ?? 0, pending: r.pending ?? 0, applied: r.applied ?? 0, failed: r.failed ?? 0, skipped: r.skipped ?? 0 },
  createdAt: r.created_at, startedAt: r.started_at, finishedAt: r.finished_at,
});

const SELECT_JOB = `
  SELECT j.*, c.* FROM migration_jobs j, LATERAL (
    SELECT count(*)::int AS total, (count(*) FILTER (WHERE t.state = 'pending'))::int AS pending, (count(*) FILTER (WHERE t.state = 'applied'))::int AS applied,
           (count(*) FILTER (WHERE t.state = 'failed'))::int AS failed, (count(*) FILTER (WHERE t.state = 'skipped'))::int AS skipped
      FROM migration_targets t WHERE t.job_id = j.id) c`;

/** Fleet-wide migration jobs as the API sees them: created here, run by a MigrationRunner. */
export class MigrationJobs {
  /** Called once a job is created or resumed: the runner here looks at once. */
  onRunnable: (() => void) | undefined;

  constructor(private readonly catalog: Catalog, private readonly events: Events) {}

  async create(partnerId: string, input: NewMigration): Promise<MigrationJob> {
    if (!MIGRATION_NAME.test(input.name)) throw new BadRequestError('name: must be 1 to 100 characters of A-Z, a-z, 0-9, ".", "_" and "-", starting with a letter or digit');
    if (!input.sql.trim()) throw new BadRequestError('sql: must not be empty');
    if (Buffer.byteLength(input.sql) > MAX_SQL_BYTES) throw new BadRequestError(`sql: at most ${MAX_SQL_BYTES} bytes`);
    if (input.sql.includes('\0')) throw new BadRequestError('sql: must not contain NUL characters');
    const concurrency = input.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) throw new BadRequestError(`concurrency: must be a whole number from 1 to ${MAX_CONCURRENCY}`);
    const maxFailures = input.maxFailures ?? null;
    if (maxFailures !== null && (!Number.isInteger(maxFailures) || maxFailures < 1)) throw new BadRequestError('max_failures: must be a whole number of at least 1 (or null: never stop)');
    const selector = validateSelector(input.selector);
    const branches = input.branches ?? false;
    const targets = await resolveSelector(this.catalog, partnerId, selector, branches);
    const id = `mig-${crypto.randomBytes(8).toString('hex')}`;
    await this.catalog.tx(async (tx) => {
      await tx.query(
        `INSERT INTO migration_jobs (id, partner_id, name, sql, selector, concurrency, max_failures, dry_run, branches, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [id, partnerId, input.name, input.sql, selector, concurrency, maxFailures, input.dryRun ?? false, branches, targets.length ? 'pending' : 'finished']);
      if (!targets.length) await tx.query('UPDATE migration_jobs SET finished_at = now(), state_detail = $2 WHERE id = $1', [id, 'the selector picked no database']);
      // One statement per 5,000 targets.
      for (let i = 0; i < targets.length; i += 5000) {
        const slice = targets.slice(i, i + 5000);
        await tx.query(
          `INSERT INTO migration_targets (job_id, branch_id, database_id, branch_name, seq)
           SELECT $1, b, d, n, $5 + o::int - 1 FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(b, d, n, o)`,
          [id, slice.map((t) => t.branchId), slice.map((t) => t.databaseId), slice.map((t) => t.branchName), i]);
      }
    });
    this.onRunnable?.();
    return this.get(partnerId, id);
  }

  async get(partnerId: string | undefined, id: string): Promise<MigrationJob> {
    const { rows } = await this.catalog.query(`${SELECT_JOB} WHERE j.id = $1 AND ($2::text IS NULL OR j.partner_id = $2)`, [id, partnerId ?? null]);
    if (!rows[0]) throw new NotFoundError(`migration "${id}" not found`);
    return toJob(rows[0]);
  }

  /** A partner's jobs (every partner's for the operator), newest first. */
  async list(partnerId: string | undefined, limit = 100): Promise<MigrationJob[]> {
    const { rows } = await this.catalog.query(`${SELECT_JOB} WHERE ($1::text IS NULL OR j.partner_id = $1) ORDER BY j.created_at DESC LIMIT $2`, [partnerId ?? null, limit]);
    return rows.map(toJob);
  }

  /** Per database: the failures first, then the others in the job's order; `state` filters. */
  async targets(partnerId: string | undefined, id: string, opts: { state?: TargetState; limit?: number; offset?: number } = {}): Promise<TargetReport[]> {
    await this.get(partnerId, id);
    const { rows } = await this.catalog.query(
      `SELECT * FROM migration_targets WHERE job_id = $1 AND ($2::text IS NULL OR state = $2)
        ORDER BY state <> 'failed', seq LIMIT $3 OFFSET $4`, [id, opts.state ?? null, opts.limit ?? 1000, opts.offset ?? 0]);
    return rows.map((r) => ({
      databaseId: r.database_id, branchId: r.branch_id, branch: r.branch_name, state: r.state, durationMs: r.duration_ms,
      error: r.error, sqlstate: r.sqlstate, reason: r.reason, updatedAt: r.updated_at,
    }));
  }

  /** pause: no database starts the migration any more (those under way finish); resume: they do again. */
  async pause(partnerId: string | undefined, id: string): Promise<MigrationJob> {
    return this.transition(partnerId, id, ['pending', 'running'], 'paused', 'pause');
  }

  async resume(partnerId: string | undefined, id: string): Promise<MigrationJob> {
    const job = await this.transition(partnerId, id, ['paused'], 'running', 'resume');
    this.onRunnable?.();
    return job;
  }

  /** The databases not yet done are skipped; those under way finish. */
  async cancel(partnerId: string | undefined, id: string): Promise<MigrationJob> {
    return this.transition(partnerId, id, ['pending', 'running', 'paused'], 'cancelled', 'cancel');
  }

  private async transition(partnerId: string | undefined, id: string, from: JobState[], to: JobState, verb: string): Promise<MigrationJob> {
    const job = await this.get(partnerId, id);
    const { rowCount } = await this.catalog.query(
      `UPDATE migration_jobs SET state = $3, state_detail = NULL, finished_at = CASE WHEN $3 = 'cancelled' THEN now() END
        WHERE id = $1 AND state = ANY($2)`, [id, from, to]);
    if (!rowCount) {
      if (job.state === to) return job;
      throw new ConflictError(`migration "${id}" is ${job.state}: it cannot ${verb}${ENDED.includes(job.state) ? ' (it has ended)' : ''}`);
    }
    if (to === 'cancelled') {
      await this.catalog.query(`UPDATE migration_targets SET state = 'skipped', reason = 'the migration was cancelled', updated_at = now() WHERE job_id = $1 AND state = 'pending'`, [id]);
    }
    const now = await this.get(partnerId, id);
    if (to === 'paused' || to === 'cancelled') {
      await this.events.recordAfter({
        type: to === 'paused' ? 'migration.paused' : 'migration.cancelled', partnerId: job.partnerId,
        data: { migration_id: id, name: job.name, ...now.counts },
      });
    }
    return now;
  }
}
