import type { Logger } from 'pino';
import type { Catalog } from './catalog/catalog.ts';

/** How long each size a compute took is kept for the charts. */
const KEEP_MS = 7 * 86_400_000;
/** A chart shows at most this many changes (the newest). */
const MAX_POINTS = 5000;

export interface SizePoint {
  at: Date;
  cu: number;
}

/**
 * The sizes computes take, in the catalog: computes.current_cu (what every gateway shows as
 * current_cu) and compute_sizes (each change, for the charts). Written by the node that runs the
 * compute, in order per branch (one write chain), never awaited by the scaler.
 */
export class ComputeSizes {
  private chain: Promise<unknown> = Promise.resolve();
  private prunedAt = 0;

  constructor(private readonly catalog: Catalog, private readonly log: Logger) {}

  record(branchId: string, databaseId: string, cu: number): void {
    this.chain = this.chain.then(async () => {
      await this.catalog.query(
        `WITH c AS (UPDATE computes SET current_cu = $3 WHERE branch_id = $1)
         INSERT INTO compute_sizes (branch_id, database_id, cu) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM branches WHERE id = $1)`,
        [branchId, databaseId, cu],
      );
      if (Date.now() - this.prunedAt > 3_600_000) {
        this.prunedAt = Date.now();
        await this.catalog.query('DELETE FROM compute_sizes WHERE at < $1', [new Date(Date.now() - KEEP_MS)]);
      }
    }).catch((err) => this.log.warn({ err: String(err), branch: branchId }, 'could not record a compute size'));
  }

  /** Resolves once every size recorded so far is in the catalog (tests, shutdown). */
  settled(): Promise<unknown> {
    return this.chain;
  }

  /**
   * The sizes of a database's main compute from `from` on, oldest first, beginning with the size
   * it held at `from` (so a chart starts right).
   */
  async history(databaseId: string, branchId: string, from: Date): Promise<SizePoint[]> {
    const { rows } = await this.catalog.query<{ at: Date; cu: number }>(
      `(SELECT $3::timestamptz AS at, cu::float8 FROM compute_sizes WHERE database_id = $1 AND branch_id = $2 AND at < $3 ORDER BY at DESC LIMIT 1)
       UNION ALL
       (SELECT at, cu::float8 FROM compute_sizes WHERE database_id = $1 AND branch_id = $2 AND at >= $3 ORDER BY at DESC LIMIT ${MAX_POINTS})
       ORDER BY at`,
      [databaseId, branchId, from],
    );
    return rows.map((r) => ({ at: r.at, cu: r.cu }));
  }
}
