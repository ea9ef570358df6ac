/** The API's JSON schemas (TypeBox): requests are validated against them, answers serialized by them, OpenAPI made from them. */
import { type Static, Type } from 'typebox';
import { MAX_PAGE } from '../src/database-records.ts';
import { MAX_COMPUTE_UNITS, MIN_COMPUTE_UNITS } from '../src/limits/cgroups.ts';
import { QUOTA_NAMES } from '../src/quotas.ts';
import { caCertificateField, connectionUriFields, serverlessFields } from './connection-schemas.ts';
import { Labels } from './migration-schemas.ts';

/** Text without control characters (a NUL cannot even be stored), of bounded length. */
const Text = (maxLength: number, extra: { description?: string; minLength?: number } = {}) =>
  Type.String({ minLength: 1, ...extra, maxLength, pattern: '^[^\\u0000-\\u001f\\u007f]*$' });

const Timestamp = Type.String({ format: 'date-time' });

const HistoryRetention = Type.Integer({ minimum: 0, maximum: 365 * 86400, description: 'seconds of history kept for restores and branches at a past time; 0 = none' });

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'stable, machine-readable: bad_request, unauthorized, forbidden, not_found, conflict, payload_too_large, rate_limited, internal …' }),
      message: Type.String({ description: 'for people; a 400 names the bad field first (`user_id: …`)' }),
    }),
  },
  { $id: 'Error', description: 'Every error has this shape.' },
);

/** The error answers every authenticated route may give. */
export const errorResponses = {
  '4xx': Type.Ref('Error'),
  '5xx': Type.Ref('Error'),
} as const;

const QuotaValue = Type.Union([Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), Type.Null()]);
export const Quotas = Type.Object(
  Object.fromEntries(QUOTA_NAMES.map((name) => [name, Type.Optional(QuotaValue)])) as Record<(typeof QUOTA_NAMES)[number], ReturnType<typeof Type.Optional<typeof QuotaValue>>>,
  { additionalProperties: false, description: 'Limits per database; null or absent = unlimited. Period quotas are per calendar month.' },
);

export const IdParams = Type.Object({ id: Text(64) });
export const RoleParams = Type.Object({ id: Text(64), role: Text(63) });

// Partners

export const PartnerCreate = Type.Object({ name: Text(128) }, { additionalProperties: false });

export const Partner = Type.Object({
  id: Type.String(), name: Type.String(), created_at: Timestamp,
  default_autoscaling: Type.Optional(Type.Union([Type.Object({ min_cu: Type.Number(), max_cu: Type.Number() }), Type.Null()])),
});

export const PartnerWithKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  created_at: Timestamp,
  api_key: Type.String({ description: 'shown in this answer only' }),
});

export const PartnerList = Type.Object({ partners: Type.Array(Partner) });

export const PartnerUpdate = Type.Object(
  {
    default_history_retention_seconds: Type.Optional(Type.Union([HistoryRetention, Type.Null()], { description: "for its databases without their own; null = pgfleet's default" })),
    default_autoscaling: Type.Optional(Type.Union([Type.Object({ min_cu: Type.Number(), max_cu: Type.Number() }, { additionalProperties: false }), Type.Null()], {
      description: "the size range of its databases without their own; null = pgfleet's (PGFLEET_AUTOSCALING)",
    })),
  },
  { additionalProperties: false },
);

// Databases

const PoolSize = Type.Union([Type.Integer({ minimum: 1, maximum: 10000 }), Type.Null()], {
  description: 'backends per pool of the -pooler endpoint (per role and database name); null = the gateway default (PGFLEET_POOL_SIZE)',
});

const ComputeUnits = Type.Union([Type.Number({ minimum: MIN_COMPUTE_UNITS, maximum: MAX_COMPUTE_UNITS, multipleOf: 0.25 }), Type.Null()], {
  description: `compute size in compute units (1 CU = 1 CPU and 4 GiB of memory, as on Neon), a multiple of 0.25 from ${MIN_COMPUTE_UNITS} to ${MAX_COMPUTE_UNITS}; `
    + 'a fixed size: the same as autoscaling {min_cu: n, max_cu: n}; null = the default range (the partner\'s default_autoscaling, else PGFLEET_AUTOSCALING)',
});

export const Autoscaling = Type.Object({
  min_cu: Type.Number({ description: `the floor: the compute starts at it and never goes below (a multiple of 0.25 from ${MIN_COMPUTE_UNITS} to ${MAX_COMPUTE_UNITS})` }),
  max_cu: Type.Number({ description: 'the ceiling: the compute never goes above it (≥ min_cu)' }),
}, { additionalProperties: false, description: 'size range in compute units (1 CU = 1 CPU and 4 GiB): a local compute moves within it with its load; a neon endpoint gets it as autoscaling_limit_min_cu / max_cu' });
const AutoscalingInput = Type.Union([Autoscaling, Type.Null()], { description: 'null = the partner\'s default_autoscaling, else PGFLEET_AUTOSCALING' });

const Durability = Type.Union([Type.Literal('async'), Type.Literal('sync')], {
  description: 'local regions: "async" (default) = a commit is acknowledged at once and its WAL is in the storage within PGFLEET_STORAGE_MAX_LAG; '
    + '"sync" = a commit is acknowledged only once its WAL is in the storage (slower commits; nothing acknowledged is lost with a node). '
    + 'Neon regions keep every commit in Neon\'s safekeepers either way',
});

export const DatabaseCreate = Type.Object(
  {
    user_id: Text(256, { description: "the partner's own id of the end user" }),
    name: Type.Optional(Text(128)),
    region: Type.Optional(Text(64)),
    role_name: Type.Optional(Text(63, { description: 'owner role; default app_owner' })),
    database_name: Type.Optional(Text(63, { description: 'default app' })),
    suspend_timeout_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 86400, description: '0 = never suspend' })),
    history_retention_seconds: Type.Optional(HistoryRetention),
    quotas: Type.Optional(Quotas),
    pool_size: Type.Optional(PoolSize),
    compute_units: Type.Optional(ComputeUnits),
    autoscaling: Type.Optional(AutoscalingInput),
    durability: Type.Optional(Durability),
    pg_version: Type.Optional(Type.Integer({
      minimum: 1, maximum: 99,
      description: "the Postgres major of its computes (every branch's), for good; one the region runs (a 400 lists them); default: the region's",
    })),
    labels: Type.Optional(Labels),
    template: Type.Optional(Type.String({
      minLength: 1, maxLength: 64,
      description: "a partner template's id: the database is a copy of it (schema, data, extensions, roles and grants; new passwords), with its role and database names and major; a role_name, database_name, pg_version or region that differs is a 400 (template_mismatch)",
    })),
  },
  { additionalProperties: false },
);

export const DatabaseUpdate = Type.Object(
  {
    name: Type.Optional(Type.Union([Text(128), Type.Null()])),
    suspend_timeout_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 7 * 86400 })),
    history_retention_seconds: Type.Optional(Type.Union([HistoryRetention, Type.Null()], { description: 'null = the partner\'s default' })),
    quotas: Type.Optional(Quotas),
    pool_size: Type.Optional(PoolSize),
    compute_units: Type.Optional(ComputeUnits),
    autoscaling: Type.Optional(AutoscalingInput),
    durability: Type.Optional(Durability),
    labels: Type.Optional(Labels),
  },
  { additionalProperties: false },
);

export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Text(255, { description: 'a retry with the same key and body returns the first answer; use a random value (UUID)' })),
});

const databaseFields = {
  id: Type.String(),
  partner_id: Type.String(),
  user_id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  region: Type.String(),
  pg_version: Type.Integer({ description: 'the Postgres major its computes run (chosen at creation): use pg_dump and pg_restore of this major (pgfleet db dump)' }),
  postgres_version: Type.String({ description: 'the Postgres version its computes run: 17.10 in a local region, the major alone (17) in a neon region' }),
  endpoint_id: Type.String({ description: 'ep-<word>-<word>-<6 digits>, the first DNS label of host' }),
  host: Type.String(),
  port: Type.Integer(),
  role: Type.String({ description: 'the owner role' }),
  database: Type.String(),
  roles: Type.Array(Type.String()),
  suspend_timeout_seconds: Type.Integer(),
  history_retention_seconds: Type.Integer({ description: 'in effect: its own, else its partner\'s default, else pgfleet\'s' }),
  quotas: Quotas,
  pool_size: PoolSize,
  compute_units: Type.Number({ description: 'the ceiling of the range in effect (autoscaling.max_cu), for clients of fixed sizes; 1 CU = 1 CPU and 4 GiB' }),
  autoscaling: Autoscaling,
  current_cu: Type.Number({ description: 'the size its compute holds now, in compute units; 0 while suspended (neon: the floor while the endpoint is active)' }),
  durability: Durability,
  pooled_host: Type.String({ description: '<endpoint>-pooler.<domain>: the same database through the transaction pooler' }),
  ...caCertificateField,
  state: Type.Union([
    Type.Literal('creating'), Type.Literal('suspended'), Type.Literal('starting'), Type.Literal('running'), Type.Literal('stopping'), Type.Literal('failed'),
  ], { description: "the compute's state; creating until the provider made the database, failed when it cannot be served (see error)" }),
  connections: Type.Integer({ description: 'client connections open now (on this gateway)' }),
  error: Type.Optional(Type.String({ description: 'why the database cannot be served (state failed)' })),
  last_active_at: Type.Union([Timestamp, Type.Null()]),
  labels: Labels,
  template: Type.Union([Type.String(), Type.Null()], { description: 'the partner template it was made from' }),
  created_at: Timestamp,
};

export const Database = Type.Object(databaseFields);

const credentialFields = {
  password: Type.String({ description: 'shown in this answer only' }),
  ...connectionUriFields,
  ...serverlessFields,
};

export const DatabaseCreated = Type.Object({ ...databaseFields, ...credentialFields });

export const DatabaseList = Type.Object({
  databases: Type.Array(Database),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor for the next page; null on the last page' }),
});

export const DatabaseListQuery = Type.Object({
  user_id: Type.Optional(Text(256, { description: 'only the databases of this user' })),
  name: Type.Optional(Text(128, { description: 'only databases whose name contains this text (case-insensitive)' })),
  q: Type.Optional(Text(256, { description: 'search: a database id, an endpoint id, a user id, or text the name contains' })),
  partner_id: Type.Optional(Text(64, { description: "operator key: one partner's databases (the operator's list spans every partner)" })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 100 })),
  cursor: Type.Optional(Text(512)),
});

export const RoleCreate = Type.Object({ name: Text(63) }, { additionalProperties: false });

export const RoleCredentials = Type.Object({
  database_id: Type.String(),
  role: Type.String(),
  host: Type.String(),
  port: Type.Integer(),
  database: Type.String(),
  ...caCertificateField,
  ...credentialFields,
});

export type DatabaseView = Static<typeof Database>;
export type DatabaseCreatedView = Static<typeof DatabaseCreated>;
export type RoleCredentialsView = Static<typeof RoleCredentials>;

// Branches and restore

export const BranchParams = Type.Object({ id: Text(64), branch: Text(100) });

const At = Text(64, { description: 'an RFC 3339 time (2025-01-31T12:00:00Z) or an LSN (0/16B3748)' });

export const BranchCreate = Type.Object(
  {
    name: Text(100, { description: 'unique in the database: A-Z, a-z, 0-9, ".", "_", "-"' }),
    parent: Type.Optional(Text(100, { description: 'the branch to copy; default: the root branch (main)' })),
    at: Type.Optional(At),
    expires_at: Type.Optional(Text(64, { description: 'an RFC 3339 time at most 30 days ahead: the branch and its compute are deleted then (branch.expired); for CI and dev branches' })),
  },
  { additionalProperties: false },
);

export const BranchUpdate = Type.Object({
  name: Type.Optional(Text(100)),
  expires_at: Type.Optional(Type.Union([Text(64), Type.Null()], { description: 'a new expiry; null: the branch stays' })),
}, { additionalProperties: false });

export const Branch = Type.Object({
  id: Type.String(),
  database_id: Type.String(),
  name: Type.String(),
  parent: Type.Union([Type.String(), Type.Null()], { description: "the parent branch's name; null for the root branch" }),
  parent_time: Type.Union([Timestamp, Type.Null()], { description: 'the moment of the parent it was copied from (null when given as an LSN)' }),
  parent_lsn: Type.Union([Type.String(), Type.Null()]),
  endpoint_id: Type.String(),
  host: Type.String(),
  port: Type.Integer(),
  database: Type.String(),
  role: Type.String({ description: 'the owner role: every branch has the database\'s roles and passwords' }),
  pooled_host: Type.String({ description: '<endpoint>-pooler.<domain>: the branch through the transaction pooler' }),
  ...caCertificateField,
  // As for a database, without the password (the database's role passwords apply).
  ...connectionUriFields,
  ...serverlessFields,
  state: databaseFields.state,
  earliest_restorable_at: Type.Union([Timestamp, Type.Null()], { description: 'null: no history is kept' }),
  expires_at: Type.Union([Timestamp, Type.Null()], { description: 'when the branch is deleted; null: it stays' }),
  created_at: Timestamp,
});

export const BranchList = Type.Object({ branches: Type.Array(Branch) });

export const RestoreRequest = Type.Object(
  {
    at: At,
    branch: Type.Optional(Text(100, { description: 'default: the root branch (main)' })),
  },
  { additionalProperties: false },
);

export const RestoreResult = Type.Object({
  branch: Branch,
  before: Type.Object(Branch.properties, { description: 'the state just before the restore, kept as a new branch' }),
});

export type BranchView = Static<typeof Branch>;

const Timed = Type.String({ format: 'date-time' });

export const ReconcileReport = Type.Object({
  regions: Type.Array(Type.Object({
    region: Type.String(),
    provider: Type.String(),
    resources: Type.Integer({ description: 'resources pgfleet made that the provider listed' }),
    orphans: Type.Array(Type.Object({ resource_id: Type.String(), database_id: Type.String(), first_seen_at: Timed, deleted: Type.Boolean() })),
    missing: Type.Array(Type.Object({ database_id: Type.String(), detail: Type.String() }), { description: 'databases marked failed in this pass' }),
    resumed: Type.Array(Type.String(), { description: 'databases whose unfinished create this pass finished' }),
    error: Type.Optional(Type.String()),
  })),
  failed: Type.Array(Type.Object({ database_id: Type.String(), region: Type.String(), detail: Type.Union([Type.String(), Type.Null()]) })),
  pending_deletions: Type.Array(Type.Object({
    database_id: Type.String(), partner_id: Type.String(), region: Type.String(), attempts: Type.Integer(),
    last_error: Type.Union([Type.String(), Type.Null()]), next_attempt_at: Timed, created_at: Timed,
  })),
});
