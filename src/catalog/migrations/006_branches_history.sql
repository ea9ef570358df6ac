-- History, branches and point-in-time restore.

-- How long each database keeps its history (seconds; 0 = none). NULL = the partner's default,
-- and a partner's NULL = pgfleet's default (7 days).
ALTER TABLE partners ADD COLUMN default_history_retention_seconds integer CHECK (default_history_retention_seconds >= 0);
ALTER TABLE databases ADD COLUMN history_retention_seconds integer CHECK (history_retention_seconds >= 0);

-- A branch being made is 'creating': never routed, removed with its files if pgfleet restarts meanwhile.
ALTER TABLE branches
  ADD COLUMN state text NOT NULL DEFAULT 'ready' CHECK (state IN ('creating', 'ready')),
  -- The moment of the parent it was branched from (NULL: as the parent was then).
  ADD COLUMN parent_time timestamptz,
  ADD COLUMN parent_lsn pg_lsn;

-- Base backups of a branch (local provider): a branch at a time T starts from the newest one
-- that ended before T and replays the archived WAL from its start. 'template' is the shared
-- template cluster (a new database's first state); 'copy' a clean data directory copied while
-- the compute was stopped; 'online' a copy taken between pg_backup_start and pg_backup_stop.
CREATE TABLE base_backups (
  branch_id   text NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
  id          text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('template', 'copy', 'online')),
  timeline    integer NOT NULL,
  start_lsn   pg_lsn NOT NULL,
  end_lsn     pg_lsn NOT NULL,
  start_time  timestamptz NOT NULL,
  end_time    timestamptz NOT NULL,
  bytes       bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (branch_id, id)
);
CREATE INDEX base_backups_branch_end ON base_backups (branch_id, end_time);

-- A restore or reset under way: which directories it moves, so that a restart can put them back.
CREATE TABLE lifecycle_ops (
  id          text PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('restore', 'reset')),
  branch_id   text NOT NULL,
  detail      jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
