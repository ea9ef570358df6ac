import type { Logger } from 'pino';
import type { Catalog } from './catalog/catalog.ts';
import { branchRefOf, routeByDatabase } from './catalog/routes.ts';
import type { Regions } from './regions.ts';

/** How often, and how far back, usage metered by providers is pulled (hourly buckets settle late). */
export const PROVIDER_USAGE_PULL_MS = 3_600_000;
export const PROVIDER_USAGE_LOOKBACK_MS = 3 * 3_600_000;

/**
 * Copies usage that providers meter themselves (Neon's consumption API) into pgfleet's usage
 * table, hour by hour. A bucket pulled again is replaced, not added to, so pulls may overlap.
 * One database's failure is logged and does not stop the others. Returns the rows written.
 */
export async function importProviderUsage(catalog: Catalog, regions: Regions, from: Date, to: Date, log: Logger): Promise<number> {
  const remote = regions.ids.filter((id) => regions.get(id).provider.name !== 'local');
  if (remote.length === 0) return 0;
  const { rows } = await catalog.query<{ id: string }>('SELECT id FROM databases WHERE region = ANY($1) ORDER BY id', [remote]);
  let written = 0;
  for (const { id } of rows) {
    const route = await routeByDatabase(catalog, id);
    if (!route) continue; // deleted meanwhile
    try {
      const samples = await regions.get(route.region).provider.usage(branchRefOf(route), from, to);
      // Neon's compute time is CPU seconds, which is compute units × seconds already.
      const withUnits = samples.flatMap((s) => (s.metric === 'compute_time_ms' ? [s, { ...s, metric: 'compute_unit_ms' }] : [s]));
      for (const s of withUnits) {
        await catalog.query(
          `INSERT INTO usage (partner_id, database_id, branch_id, bucket, metric, value) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (database_id, branch_id, metric, bucket) DO UPDATE SET value = EXCLUDED.value`,
          [route.partnerId, route.databaseId, route.branchId, s.bucket, s.metric, s.value],
        );
        written++;
      }
    } catch (err) {
      log.warn({ database: id, err: (err as Error).message }, 'could not import provider usage');
    }
  }
  return written;
}
