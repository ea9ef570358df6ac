import type { Catalog } from './catalog.ts';
import type { Logger } from '../log.ts';
import type { LocalProvider } from '../providers/local/local-provider.ts';
import type { Regions } from '../regions.ts';

/**
 * Databases made before the catalog kept each one's Postgres major (migration 018) get theirs,
 * before anything is served: a local database's is its data's (PG_VERSION of a branch started on
 * this host), else, never started here, its region's default now; a neon database's is its
 * region's `pg_version`, which its project was created with.
 */
export async function backfillPgVersions(catalog: Catalog, regions: Regions, local: LocalProvider, log: Logger): Promise<void> {
  const { rows } = await catalog.query<{ id: string; region: string; provider: string; branches: string[] }>(
    `SELECT d.id, d.region, d.provider, array_agg(b.id ORDER BY b.created_at) AS branches
       FROM databases d JOIN branches b ON b.database_id = d.id WHERE d.pg_version IS NULL GROUP BY d.id`);
  if (rows.length === 0) return;
  const majors = rows.map((row) => {
    const onDisk = row.provider === 'local' ? row.branches.map((b) => local.files.dataPgVersion({ region: row.region, databaseId: row.id, branchId: b })).find((m) => m !== undefined) : undefined;
    return onDisk ?? (regions.find(row.region) ?? regions.default).pgVersion;
  });
  await catalog.query(
    `UPDATE databases d SET pg_version = v.major FROM unnest($1::text[], $2::int[]) AS v(id, major) WHERE d.id = v.id AND d.pg_version IS NULL`,
    [rows.map((r) => r.id), majors],
  );
  log.info({ databases: rows.length }, 'recorded the Postgres major of databases made before majors were kept');
}
