/** JSON schemas of fleet-wide migrations and partner templates. */
import { Type } from 'typebox';
import { DEFAULT_CONCURRENCY, MAX_CONCURRENCY } from '../src/migrations/jobs.ts';

const Timestamp = Type.String({ format: 'date-time' });
const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

export const Labels = Type.Record(Type.String({ minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9._/-]*$' }), Type.String({ maxLength: 256 }), {
  description: 'a map of strings the partner chooses (at most 64 keys); migration selectors match them',
  maxProperties: 64,
});

export const MigrationSelector = Type.Object({
  region: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  template: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'databases made from this template' })),
  labels: Type.Optional(Labels),
  ids: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 100_000 })),
  templates: Type.Optional(Type.Boolean({ description: "the partner's templates themselves too (those of `region`, or the one `template` names)" })),
}, { additionalProperties: false, description: 'every part given must hold; omitted = all the partner\'s databases' });

export const MigrationCreate = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100, description: 'applied at most once per database: databases that have it are skipped' }),
  sql: Type.String({ minLength: 1, maxLength: 1 << 20, description: 'run in one transaction in each database, as its owner role' }),
  selector: Type.Optional(MigrationSelector),
  concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_CONCURRENCY, description: `databases at once (default ${DEFAULT_CONCURRENCY})` })),
  max_failures: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'the job stops (state failed) once this many databases failed; null = never' })),
  dry_run: Type.Optional(Type.Boolean({ description: 'run it and roll it back: nothing is recorded' })),
  branches: Type.Optional(Type.Boolean({ description: "every branch of each database, not only its main one" })),
}, { additionalProperties: false });

const Counts = Type.Object({ total: Type.Integer(), pending: Type.Integer(), applied: Type.Integer(), failed: Type.Integer(), skipped: Type.Integer() });

const TargetStateSchema = Type.Union([Type.Literal('pending'), Type.Literal('applied'), Type.Literal('failed'), Type.Literal('skipped')]);

export const TargetView = Type.Object({
  database_id: Type.String(),
  branch_id: Type.String(),
  branch: Type.String(),
  state: TargetStateSchema,
  duration_ms: Type.Union([Type.Integer(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()], { description: "failed: Postgres's error" }),
  sqlstate: Type.Union([Type.String(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()], { description: 'skipped: why (already applied, over quota, cancelled, …)' }),
  updated_at: Timestamp,
});

export const MigrationView = Type.Object({
  id: Type.String(),
  partner_id: Type.String(),
  name: Type.String(),
  sql: Type.String(),
  selector: Type.Any(),
  concurrency: Type.Integer(),
  max_failures: Type.Union([Type.Integer(), Type.Null()]),
  dry_run: Type.Boolean(),
  branches: Type.Boolean(),
  state: Type.Union([Type.Literal('pending'), Type.Literal('running'), Type.Literal('paused'), Type.Literal('finished'), Type.Literal('failed'), Type.Literal('cancelled')]),
  state_detail: Type.Union([Type.String(), Type.Null()]),
  counts: Counts,
  failures: Type.Array(TargetView, { description: 'the first 100 failed databases' }),
  created_at: Timestamp,
  started_at: NullableTimestamp,
  finished_at: NullableTimestamp,
});

export const MigrationList = Type.Object({ migrations: Type.Array(Type.Omit(MigrationView, ['failures'])) });
export const MigrationParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
export const TargetQuery = Type.Object({
  state: Type.Optional(TargetStateSchema),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
});
export const TargetList = Type.Object({ databases: Type.Array(TargetView) });

export const TemplateCreate = Type.Object({
  database_id: Type.String({ minLength: 1, maxLength: 64 }),
  branch: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'default: the main branch' })),
  name: Type.String({ minLength: 1, maxLength: 100 }),
}, { additionalProperties: false });

export const TemplateView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  source_database_id: Type.String(),
  source_branch: Type.String(),
  region: Type.String(),
  pg_version: Type.Integer(),
  database: Type.String(),
  role: Type.String(),
  roles: Type.Array(Type.String()),
  created_at: Timestamp,
});
export const TemplateList = Type.Object({ templates: Type.Array(TemplateView) });
