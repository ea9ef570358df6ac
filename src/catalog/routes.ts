import type { CuRange } from '../autoscaling.ts';
import type { BranchRef } from '../providers/provider.ts';
import type { Quotas } from '../quotas.ts';
import type { Catalog } from './catalog.ts';

/** Everything the doors need to route to one branch's compute, read in one catalog query. */
export interface BranchRoute {
  endpointId: string;
  branchId: string;
  branchName: string;
  /** The database's root branch (`main`). */
  root: boolean;
  databaseId: string;
  partnerId: string;
  userId: string;
  region: string;
  provider: string;
  databaseName: string;
  ownerRole: string;
  suspendTimeoutSeconds: number;
  /** Backends per pool of its `-pooler` endpoint; null = the gateway default. */
  poolSize: number | null;
  /** The database's compute size range (its own, else its partner's default); null = the gateway's PGFLEET_AUTOSCALING. */
  autoscaling: CuRange | null;
  /** The Postgres major of the database's computes. */
  pgVersion: number;
  /** 'sync': commits wait for their WAL to be in the store. */
  durability: 'async' | 'sync';
  /** The database's own quotas over its partner's defaults. */
  quotas: Quotas;
  /** role name → SCRAM-SHA-256 verifier (a Map: role names are the tenant's, `__proto__` included) */
  verifiers: Map<string, string>;
  providerState: Record<string, unknown>;
  /** 'ready' databases are served; 'creating' and 'failed' ones are not (statusDetail says why). */
  status: 'creating' | 'ready' | 'failed';
  statusDetail: string | null;
  /** A root branch made as a copy of this branch (a partner template's). */
  copyOf: string | null;
  /** The node that holds a local database's data (null: another provider, or served where it is). */
  node: { id: string; address: string | null; silentSeconds: number | null } | null;
}

const SELECT_ROUTE = `
  SELECT e.id AS endpoint_id, b.id AS branch_id, b.name AS branch_name, b.parent_id IS NULL AS root, b.provider_state AS branch_state,
         d.id AS database_id, d.partner_id, d.user_id, d.region, d.provider, d.database_name, d.owner_role,
         d.suspend_timeout_seconds, d.pool_size, COALESCE(d.autoscaling_min_cu, p.default_autoscaling_min_cu)::float8 AS min_cu,
         COALESCE(d.autoscaling_max_cu, p.default_autoscaling_max_cu)::float8 AS max_cu, d.pg_version, d.durability, p.default_quotas || d.quotas AS quotas, d.provider_state AS database_state, d.status, d.status_detail,
         CASE WHEN b.parent_id IS NULL THEN d.copy_of_branch END AS copy_of,
         COALESCE((SELECT json_object_agg(r.name, r.scram_verifier) FROM roles r WHERE r.database_id = d.id), '{}') AS verifiers,
         d.node_id, n.address AS node_address, extract(epoch FROM clock_timestamp() - n.heartbeat_at)::float8 AS node_silence
    FROM endpoints e
    JOIN branches b ON b.id = e.branch_id
    JOIN databases d ON d.id = b.database_id
    JOIN partners p ON p.id = d.partner_id
    LEFT JOIN nodes n ON n.id = d.node_id`;

function toRoute(row: any): BranchRoute {
  return {
    endpointId: row.endpoint_id,
    branchId: row.branch_id,
    branchName: row.branch_name,
    root: row.root,
    databaseId: row.database_id,
    partnerId: row.partner_id,
    userId: row.user_id,
    region: row.region,
    provider: row.provider,
    databaseName: row.database_name,
    ownerRole: row.owner_role,
    suspendTimeoutSeconds: row.suspend_timeout_seconds,
    poolSize: row.pool_size,
    autoscaling: row.min_cu === null ? null : { minCu: row.min_cu, maxCu: row.max_cu },
    pgVersion: row.pg_version,
    durability: row.durability,
    quotas: row.quotas,
    verifiers: new Map(Object.entries(row.verifiers as Record<string, string>)),
    providerState: { ...row.database_state, ...row.branch_state },
    status: row.status,
    statusDetail: row.status_detail,
    copyOf: row.copy_of ?? null,
    node: row.node_id ? { id: row.node_id, address: row.node_address, silentSeconds: row.node_silence } : null,
  };
}

/** The route of an endpoint; a branch still being made has none. */
export async function routeByEndpoint(catalog: Catalog, endpointId: string): Promise<BranchRoute | undefined> {
  const { rows } = await catalog.query(`${SELECT_ROUTE} WHERE e.id = $1 AND b.state = 'ready'`, [endpointId]);
  return rows[0] ? toRoute(rows[0]) : undefined;
}

export async function routeByBranch(catalog: Catalog, branchId: string): Promise<BranchRoute | undefined> {
  const { rows } = await catalog.query(`${SELECT_ROUTE} WHERE b.id = $1`, [branchId]);
  return rows[0] ? toRoute(rows[0]) : undefined;
}

/** The main branch of a database. */
export async function routeByDatabase(catalog: Catalog, databaseId: string): Promise<BranchRoute | undefined> {
  const { rows } = await catalog.query(`${SELECT_ROUTE} WHERE d.id = $1 AND b.parent_id IS NULL ORDER BY b.created_at LIMIT 1`, [databaseId]);
  return rows[0] ? toRoute(rows[0]) : undefined;
}

/** Every branch of a database (those being made too), the main one first. */
export async function routesOfDatabase(catalog: Catalog, databaseId: string): Promise<BranchRoute[]> {
  const { rows } = await catalog.query(`${SELECT_ROUTE} WHERE d.id = $1 ORDER BY b.parent_id IS NOT NULL, b.created_at`, [databaseId]);
  return rows.map(toRoute);
}

export function branchRefOf(route: BranchRoute): BranchRef {
  return {
    databaseId: route.databaseId,
    branchId: route.branchId,
    root: route.root,
    region: route.region,
    databaseName: route.databaseName,
    ownerRole: route.ownerRole,
    roles: [...route.verifiers.keys()],
    suspendTimeoutSeconds: route.suspendTimeoutSeconds,
    quotas: route.quotas,
    autoscaling: route.autoscaling,
    pgVersion: route.pgVersion,
    durability: route.durability,
    providerState: route.providerState,
    ...(route.copyOf ? { copyOf: route.copyOf } : {}),
  };
}
