import type { Catalog } from './catalog/catalog.ts';
import { BadRequestError, NotFoundError } from './errors.ts';
import type { Events } from './events/events.ts';
import type { Branches } from './branches.ts';
import type { Logger } from './log.ts';

/** The furthest ahead an expires_at may be (as on Neon). */
export const MAX_EXPIRY_MS = 30 * 86_400_000;
/** While one gateway deletes an expired branch, the others leave it alone this long. */
const CLAIM_SECONDS = 300;

/** An `expires_at` from a request: an RFC 3339 time in the future, at most 30 days ahead (400 naming the field otherwise). */
export function parseExpiresAt(text: string, now = Date.now()): Date {
  const ms = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) throw new BadRequestError('expires_at: not an RFC 3339 time such as 2025-01-31T12:00:00Z');
  if (ms <= now) throw new BadRequestError(`expires_at: ${text} is not in the future`);
  if (ms > now + MAX_EXPIRY_MS) throw new BadRequestError(`expires_at: at most 30 days ahead (${new Date(now + MAX_EXPIRY_MS).toISOString()})`);
  return new Date(ms);
}

/**
 * Ephemeral branches (CI's dev and test branches): a branch with an expiry is deleted with its
 * compute once it is due, by whichever gateway claims it first, and branch.expired is recorded.
 */
export class BranchExpiry {
  constructor(
    private readonly catalog: Catalog,
    private readonly branches: Branches,
    private readonly events: Events,
    private readonly log: Logger,
  ) {}

  /** Sets (or with null, clears) a branch's expiry. */
  async set(branchId: string, at: Date | null): Promise<void> {
    if (at === null) await this.catalog.query('DELETE FROM branch_expiry WHERE branch_id = $1', [branchId]);
    else {
      await this.catalog.query(
        `INSERT INTO branch_expiry (branch_id, expires_at) VALUES ($1, $2) ON CONFLICT (branch_id) DO UPDATE SET expires_at = $2, claimed_until = NULL`,
        [branchId, at]);
    }
  }

  /** The expiry of each of these branches that has one. */
  async of(branchIds: string[]): Promise<Map<string, Date>> {
    const { rows } = await this.catalog.query('SELECT branch_id, expires_at FROM branch_expiry WHERE branch_id = ANY($1)', [branchIds]);
    return new Map(rows.map((r) => [r.branch_id, r.expires_at]));
  }

  /** Deletes the branches that are due; returns how many went. */
  async run(): Promise<number> {
    const { rows } = await this.catalog.query(
      `UPDATE branch_expiry x SET claimed_until = now() + make_interval(secs => $1)
         FROM branches b, databases d
        WHERE x.branch_id IN (SELECT branch_id FROM branch_expiry WHERE expires_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
                               ORDER BY expires_at LIMIT 20 FOR UPDATE SKIP LOCKED)
          AND b.id = x.branch_id AND d.id = b.database_id
        RETURNING x.branch_id, x.expires_at, b.name, d.id AS database_id, d.partner_id`, [CLAIM_SECONDS]);
    let deleted = 0;
    for (const r of rows) {
      try {
        await this.branches.delete(r.partner_id, r.database_id, r.name);
      } catch (err) {
        if (!(err instanceof NotFoundError)) {
          this.log.warn({ database: r.database_id, branch: r.branch_id, err: String(err) }, 'could not delete an expired branch; it is tried again later');
          continue;
        }
      }
      deleted++;
      this.log.info({ database: r.database_id, branch: r.branch_id, name: r.name, expires_at: r.expires_at }, 'expired branch deleted');
      await this.events.record({
        id: `evt_branch_expired_${r.branch_id}`, type: 'branch.expired', partnerId: r.partner_id, databaseId: r.database_id,
        data: { branch_id: r.branch_id, name: r.name, expires_at: r.expires_at.toISOString() },
      });
    }
    return deleted;
  }
}
