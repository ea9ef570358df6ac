-- The catalog: who the partners are, their users' databases, and what runs where.
CREATE TABLE partners (
  id              text PRIMARY KEY,
  name            text NOT NULL,
  default_quotas  jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- API keys are stored as SHA-256 hashes only. partner_id NULL = an operator key.
CREATE TABLE api_keys (
  id          text PRIMARY KEY,
  partner_id  text REFERENCES partners(id) ON DELETE CASCADE,
  key_hash    text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  revoked_at  timestamptz
);

CREATE TABLE databases (
  id                       text PRIMARY KEY,
  partner_id               text NOT NULL REFERENCES partners(id) ON DELETE CASCADE,
  user_id                  text NOT NULL,
  name                     text,
  region                   text NOT NULL,
  provider                 text NOT NULL,
  database_name            text NOT NULL,
  owner_role               text NOT NULL,
  suspend_timeout_seconds  integer NOT NULL CHECK (suspend_timeout_seconds >= 0),
  quotas                   jsonb NOT NULL DEFAULT '{}',
  provider_state           jsonb NOT NULL DEFAULT '{}',
  created_at               timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX databases_partner_order ON databases (partner_id, created_at, id);
CREATE INDEX databases_partner_user_order ON databases (partner_id, user_id, created_at, id);

CREATE TABLE branches (
  id              text PRIMARY KEY,
  database_id     text NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
  name            text NOT NULL,
  parent_id       text REFERENCES branches(id) ON DELETE SET NULL,
  provider_state  jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  UNIQUE (database_id, name)
);

-- The routable name of a branch's compute: the first DNS label of its host.
CREATE TABLE endpoints (
  id          text PRIMARY KEY,
  branch_id   text NOT NULL UNIQUE REFERENCES branches(id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Login roles: only the SCRAM-SHA-256 verifier is kept, never the password.
CREATE TABLE roles (
  database_id     text NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
  name            text NOT NULL,
  scram_verifier  text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (database_id, name)
);

CREATE TABLE computes (
  branch_id       text PRIMARY KEY REFERENCES branches(id) ON DELETE CASCADE,
  state           text NOT NULL DEFAULT 'suspended'
                  CHECK (state IN ('suspended', 'starting', 'running', 'stopping', 'failed')),
  pid             integer,
  started_at      timestamptz,
  last_active_at  timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Usage in hourly buckets. No foreign key: billing still needs a deleted database's usage.
CREATE TABLE usage (
  partner_id   text NOT NULL,
  database_id  text NOT NULL,
  branch_id    text NOT NULL,
  bucket       timestamptz NOT NULL,
  metric       text NOT NULL,
  value        bigint NOT NULL,
  PRIMARY KEY (database_id, branch_id, metric, bucket)
);
CREATE INDEX usage_partner_bucket ON usage (partner_id, bucket);

-- Idempotent creates: the same key and body return the stored answer.
CREATE TABLE idempotency_keys (
  partner_id    text NOT NULL REFERENCES partners(id) ON DELETE CASCADE,
  key           text NOT NULL,
  request_hash  text NOT NULL,
  status        integer,
  response      jsonb,
  created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (partner_id, key)
);
