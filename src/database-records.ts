/** A database as the catalog holds it: its record, what a create or update names, their checks, and the rows behind them. */
import { prepared } from './catalog/prepared.ts';
import { BadRequestError } from './errors.ts';
import { NAME_PATTERN } from './names.ts';
import { type CuRange } from './autoscaling.ts';
import { type Quotas } from './quotas.ts';
import type { ComputeState } from './compute-target.ts';

/** A database as the doors show it. */
export interface DatabaseRecord {
  id: string;
  partnerId: string;
  userId: string;
  name: string | null;
  region: string;
  provider: string;
  databaseName: string;
  ownerRole: string;
  roles: string[];
  endpointId: string;
  branchId: string;
  suspendTimeoutSeconds: number;
  /** Its own, else its partner's default; null = pgfleet's default (PGFLEET_HISTORY_RETENTION). */
  historyRetentionSeconds: number | null;
  quotas: Quotas;
  /** Backends per pool of its `-pooler` endpoint; null = the gateway's PGFLEET_POOL_SIZE. */
  poolSize: number | null;
  /** Its compute size range in compute units: its own, else its partner's default; null = the gateway's PGFLEET_AUTOSCALING. */
  autoscaling: CuRange | null;
  /** The size its compute holds now as its node last recorded it (0 while not running). */
  recordedCu: number;
  /** The Postgres major of its computes, chosen at creation. */
  pgVersion: number;
  /** 'sync': a commit is acknowledged once its WAL is in the store (local regions); 'async': within PGFLEET_STORAGE_MAX_LAG. */
  durability: Durability;
  createdAt: Date;
  /** Last activity the catalog recorded; the compute manager knows fresher while it runs. */
  lastActiveAt: Date | null;
  /** 'creating' until the provider's resource exists; 'failed' when it is gone (statusDetail says why). */
  status: DatabaseStatus;
  statusDetail: string | null;
  /** The node that holds a local database's data (null: another provider). */
  nodeId: string | null;
  /** The compute's state as its node last recorded it in the catalog. */
  recordedState: ComputeState;
  /** The partner's labels (migration selectors match them). */
  labels: Labels;
  /** The partner template it was made from (src/partner-templates.ts), if any. */
  templateId: string | null;
}

export type Labels = Record<string, string>;

export type DatabaseStatus = 'creating' | 'ready' | 'failed';
export type Durability = 'async' | 'sync';

export interface NewDatabase {
  partnerId: string;
  userId: string;
  name?: string | null;
  region?: string;
  roleName?: string;
  databaseName?: string;
  suspendTimeoutSeconds?: number;
  historyRetentionSeconds?: number | null;
  quotas?: Quotas;
  poolSize?: number | null;
  /** null or absent: the partner's default, else PGFLEET_AUTOSCALING. */
  autoscaling?: CuRange | null;
  /** The Postgres major; default: the region's. */
  pgVersion?: number;
  durability?: Durability;
  labels?: Labels;
  /** A partner template's hidden database ('template'), not one of the partner's own. */
  kind?: 'database' | 'template';
  /** Made from this partner template: its first start copies the template's files. */
  templateId?: string;
  /** Login roles besides the owner (a template's), each with a new password no answer shows. */
  otherRoles?: string[];
  /** The branch whose data its first start copies (a partner template's main branch, or a template's source). */
  copyOf?: string;
}

export interface DatabaseChanges {
  name?: string | null;
  suspendTimeoutSeconds?: number;
  /** null = back to the partner's default. */
  historyRetentionSeconds?: number | null;
  quotas?: Quotas;
  poolSize?: number | null;
  /** null = back to the partner's default, else PGFLEET_AUTOSCALING. */
  autoscaling?: CuRange | null;
  durability?: Durability;
  /** Replaces the labels. */
  labels?: Labels;
}

export interface Page<T> {
  items: T[];
  /** Pass back as `cursor` for the next page; undefined on the last one. */
  nextCursor: string | undefined;
}

export const DEFAULT_DATABASE_NAME = 'app';
export const DEFAULT_OWNER_ROLE = 'app_owner';
export const MAX_PAGE = 1000;

// Lower-case SQL identifiers, so that psql and every driver name them without quoting.
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const RESERVED_ROLES = new Set(['pgfleet_admin', 'postgres', 'public', 'none', 'current_user', 'session_user', 'current_role']);
export const RESERVED_DATABASES = new Set(['postgres', 'template0', 'template1']);

export function validateIdentifier(field: string, value: string, reserved: Set<string>): string {
  if (!IDENTIFIER.test(value)) {
    throw new BadRequestError(`${field}: must be 1 to 63 characters of a-z, 0-9 and _, not starting with a digit`);
  }
  if (value.startsWith('pg_') || reserved.has(value)) throw new BadRequestError(`${field}: "${value}" is reserved`);
  return value;
}

export const validateRoleName = (value: string, field = 'role_name') => validateIdentifier(field, value, RESERVED_ROLES);

/** A database's own range, else its partner's default (both bounds or neither). */
const OWN_RANGE = `COALESCE(d.autoscaling_min_cu, (SELECT p.default_autoscaling_min_cu FROM partners p WHERE p.id = d.partner_id))::float8 AS min_cu,
         COALESCE(d.autoscaling_max_cu, (SELECT p.default_autoscaling_max_cu FROM partners p WHERE p.id = d.partner_id))::float8 AS max_cu`;

export const SELECT_DATABASE = `
  SELECT d.*, b.id AS branch_id,
         COALESCE(d.history_retention_seconds, (SELECT p.default_history_retention_seconds FROM partners p WHERE p.id = d.partner_id)) AS effective_retention, e.id AS endpoint_id, (extract(epoch FROM d.created_at) * 1000000)::int8 AS created_us,
         (SELECT c.last_active_at FROM computes c WHERE c.branch_id = b.id) AS last_active_at,
         COALESCE((SELECT c.state FROM computes c WHERE c.branch_id = b.id), 'suspended') AS recorded_state,
         COALESCE((SELECT c.current_cu FROM computes c WHERE c.branch_id = b.id), 0)::float8 AS recorded_cu,
         ${OWN_RANGE},
         ARRAY(SELECT r.name FROM roles r WHERE r.database_id = d.id ORDER BY r.created_at, r.name) AS roles
    FROM databases d
    JOIN branches b ON b.database_id = d.id AND b.parent_id IS NULL
    JOIN endpoints e ON e.branch_id = b.id`;

export function toRecord(row: any): DatabaseRecord {
  return {
    id: row.id,
    partnerId: row.partner_id,
    userId: row.user_id,
    name: row.name,
    region: row.region,
    provider: row.provider,
    databaseName: row.database_name,
    ownerRole: row.owner_role,
    roles: row.roles,
    endpointId: row.endpoint_id,
    branchId: row.branch_id,
    suspendTimeoutSeconds: row.suspend_timeout_seconds,
    historyRetentionSeconds: row.effective_retention,
    quotas: row.quotas,
    poolSize: row.pool_size,
    autoscaling: row.min_cu === null ? null : { minCu: row.min_cu, maxCu: row.max_cu },
    recordedCu: row.recorded_cu,
    pgVersion: row.pg_version,
    durability: row.durability,
    createdAt: row.created_at,
    lastActiveAt: row.last_active_at,
    status: row.status,
    statusDetail: row.status_detail,
    nodeId: row.node_id,
    recordedState: row.recorded_state,
    labels: row.labels ?? {},
    templateId: row.partner_template_id ?? null,
  };
}

// A cursor is the last row's exact (created_at in microseconds, id), so pages neither skip nor repeat rows.
export function encodeCursor(row: any): string {
  return Buffer.from(JSON.stringify([row.created_us, row.id])).toString('base64url');
}

export function decodeCursor(cursor: string): [number, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && v[0] >= 0 && typeof v[1] === 'string' && NAME_PATTERN.test(v[1])) {
      return [v[0], v[1]];
    }
  } catch {
    /* falls through to the error */
  }
  throw new BadRequestError('cursor: not a cursor this API returned');
}

const MAX_LABELS = 64;

export function validateLabels(labels: unknown): Labels {
  if (!isPlainObject(labels)) throw new BadRequestError('labels: must be an object of strings');
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) throw new BadRequestError(`labels: at most ${MAX_LABELS}`);
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/.test(k)) throw new BadRequestError(`labels: key "${k}" must be 1 to 63 characters of A-Z, a-z, 0-9, ".", "_", "/" and "-"`);
    if (typeof v !== 'string' || v.length > 256) throw new BadRequestError(`labels.${k}: must be a string of at most 256 characters`);
  }
  return labels as Labels;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export const INSERT_DATABASE = prepared(`
  WITH d AS (
    INSERT INTO databases (id, partner_id, user_id, name, region, provider, database_name, owner_role, suspend_timeout_seconds, quotas, node_id, history_retention_seconds, pool_size, autoscaling_min_cu, autoscaling_max_cu, pg_version, durability, status, labels, kind, partner_template_id, copy_of_branch)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $14, $15, $16, $17, $26, $18, $19, $27, $20, $21, $22, $25) RETURNING created_at,
      COALESCE(history_retention_seconds, (SELECT default_history_retention_seconds FROM partners WHERE id = $2)) AS effective_retention,
      COALESCE(autoscaling_min_cu, (SELECT default_autoscaling_min_cu FROM partners WHERE id = $2))::float8 AS min_cu,
      COALESCE(autoscaling_max_cu, (SELECT default_autoscaling_max_cu FROM partners WHERE id = $2))::float8 AS max_cu),
  b AS (INSERT INTO branches (id, database_id, name) VALUES ($11, $1, 'main')),
  e AS (INSERT INTO endpoints (id, branch_id) VALUES ($12, $11)),
  r AS (INSERT INTO roles (database_id, name, scram_verifier) SELECT $1, n, v FROM unnest(ARRAY[$8::text] || $23::text[], ARRAY[$13::text] || $24::text[]) AS u(n, v)),
  c AS (INSERT INTO computes (branch_id, state) VALUES ($11, 'suspended'))
  SELECT created_at, effective_retention, min_cu, max_cu FROM d`);

export const isUniqueViolation = (err: unknown) => (err as { code?: string }).code === '23505';

/** Why a database that is not 'ready' cannot be used, for the API and the wire. */
export function unavailableReason(databaseId: string, status: DatabaseStatus, detail: string | null): string {
  return status === 'creating'
    ? `database "${databaseId}" is still being created`
    : `database "${databaseId}" is unavailable: ${detail ?? 'its provider resource is gone'}`;
}
