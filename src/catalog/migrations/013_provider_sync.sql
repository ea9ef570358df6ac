-- What pgfleet keeps in step with a provider's own records (Neon projects).
-- A database is 'creating' until its provider resource exists and its state is kept; 'failed'
-- when that resource is gone (status_detail says why). Only 'ready' databases are served.
ALTER TABLE databases
  ADD COLUMN status text NOT NULL DEFAULT 'ready' CHECK (status IN ('creating', 'ready', 'failed')),
  ADD COLUMN status_detail text,
  ADD COLUMN status_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE INDEX databases_not_ready ON databases (status, status_at) WHERE status <> 'ready';

-- Provider resources of deleted databases, kept until the provider confirms they are gone.
-- No foreign keys: the database (and perhaps its partner) no longer exist.
CREATE TABLE provider_deletions (
  database_id      text PRIMARY KEY,
  partner_id       text NOT NULL,
  region           text NOT NULL,
  refs             jsonb NOT NULL,  -- the branches to delete, children first
  attempts         integer NOT NULL DEFAULT 0,
  last_error       text,
  next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Resources at a provider that no catalog database claims, since reconciliation first saw them.
CREATE TABLE provider_orphans (
  region         text NOT NULL,
  resource_id    text NOT NULL,
  database_id    text NOT NULL,
  first_seen_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_seen_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (region, resource_id)
);
