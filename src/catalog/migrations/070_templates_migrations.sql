-- Labels of a database (a map of strings, chosen by the partner): migration selectors match them.
ALTER TABLE databases ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';
CREATE INDEX databases_labels ON databases USING gin (labels jsonb_path_ops);

-- Partner templates: a point-in-time copy of a partner's database (or branch), kept as a hidden
-- database of its own (databases.kind = 'template'), never listed with the partner's databases.
-- A database made from one names it in partner_template_id, and its first start copies its files.
ALTER TABLE databases ADD COLUMN kind text NOT NULL DEFAULT 'database' CHECK (kind IN ('database', 'template'));
ALTER TABLE databases ADD COLUMN partner_template_id text;
-- A database whose first start copies another branch's data (a template's, or a template's source).
ALTER TABLE databases ADD COLUMN copy_of_branch text;
CREATE TABLE partner_templates (
  id           text PRIMARY KEY,
  partner_id   text NOT NULL REFERENCES partners(id) ON DELETE CASCADE,
  name         text NOT NULL,
  -- The hidden database that holds the template's data.
  database_id  text NOT NULL UNIQUE REFERENCES databases(id),
  source_database_id text NOT NULL,
  source_branch text NOT NULL,
  state        text NOT NULL DEFAULT 'creating' CHECK (state IN ('creating', 'ready')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (partner_id, name)
);

-- Fleet-wide migrations: a job, run by one gateway at a time (lease_owner/lease_until), and one row
-- per database (or branch) it selected, each with its outcome.
CREATE TABLE migration_jobs (
  id            text PRIMARY KEY,
  partner_id    text NOT NULL REFERENCES partners(id) ON DELETE CASCADE,
  name          text NOT NULL,
  sql           text NOT NULL,
  selector      jsonb NOT NULL DEFAULT '{}',
  concurrency   int NOT NULL,
  max_failures  int,
  dry_run       boolean NOT NULL DEFAULT false,
  branches      boolean NOT NULL DEFAULT false,
  state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'paused', 'finished', 'failed', 'cancelled')),
  state_detail  text,
  lease_owner   text,
  lease_until   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  started_at    timestamptz,
  finished_at   timestamptz
);
CREATE INDEX migration_jobs_partner ON migration_jobs (partner_id, created_at);
CREATE INDEX migration_jobs_active ON migration_jobs (created_at) WHERE state IN ('pending', 'running');

CREATE TABLE migration_targets (
  job_id       text NOT NULL REFERENCES migration_jobs(id) ON DELETE CASCADE,
  branch_id    text NOT NULL,
  database_id  text NOT NULL,
  branch_name  text NOT NULL,
  -- Its order in the job: pending rows are taken in this order.
  seq          int NOT NULL,
  state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied', 'failed', 'skipped')),
  duration_ms  int,
  error        text,
  sqlstate     text,
  reason       text,
  -- Whether the job woke its compute (it is suspended again after).
  woke         boolean NOT NULL DEFAULT false,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, branch_id)
);
CREATE INDEX migration_targets_pending ON migration_targets (job_id, seq) WHERE state = 'pending';
