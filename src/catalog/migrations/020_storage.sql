-- Object storage is the home of every local database's data and history; a node's disk is a cache.

-- A history is one line of a branch's WAL in the store, on one Postgres timeline: its own WAL,
-- its own base backups, and (for a branch, a restore, or a recovery elsewhere) the history it
-- forked from and where. A branch points at its current history; a restore gives it a new one and
-- its `_before_` branch keeps the old one.
CREATE TABLE histories (
  id                  text PRIMARY KEY,
  database_id         text NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
  timeline            integer NOT NULL,
  ancestor_id         text REFERENCES histories(id) ON DELETE SET NULL,
  -- Where this history leaves its ancestor: positions before it are the ancestor's.
  ancestor_lsn        pg_lsn,
  ancestor_time       timestamptz,
  -- The first position of its own WAL, and (a lower bound: the store is the truth) where it ends.
  start_lsn           pg_lsn NOT NULL,
  end_lsn             pg_lsn NOT NULL,
  end_time            timestamptz,
  -- The node whose compute writes it now (NULL: nobody; its end is exact).
  writer_node         text,
  writer_generation   bigint,
  created_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX histories_database ON histories (database_id);
CREATE INDEX histories_ancestor ON histories (ancestor_id) WHERE ancestor_id IS NOT NULL;

ALTER TABLE branches ADD COLUMN history_id text REFERENCES histories(id);

-- Base backups now live in the store, per history; those of the local archive are not kept.
DROP TABLE base_backups;
CREATE TABLE base_backups (
  history_id  text NOT NULL REFERENCES histories(id) ON DELETE CASCADE,
  id          text NOT NULL,
  -- 'template': the shared template (a new database's first state); 'copy': a cleanly stopped data
  -- directory; 'online': taken while the compute ran (pg_backup_start .. pg_backup_stop).
  kind        text NOT NULL CHECK (kind IN ('template', 'copy', 'online')),
  timeline    integer NOT NULL,
  start_lsn   pg_lsn NOT NULL,
  end_lsn     pg_lsn NOT NULL,
  start_time  timestamptz NOT NULL,
  end_time    timestamptz NOT NULL,
  bytes       bigint NOT NULL DEFAULT 0,
  -- Its manifest in the store.
  manifest    text NOT NULL,
  PRIMARY KEY (history_id, id)
);
CREATE INDEX base_backups_end ON base_backups (history_id, end_lsn);

-- The fleet's compute templates (initdb output), one per Postgres version: every node starts
-- databases from the same one, so WAL written on one node replays on another.
-- Per store: nodes that share no store each keep their own.
CREATE TABLE templates (
  store            text NOT NULL,
  version          text NOT NULL,
  manifest         text NOT NULL,
  timeline         integer NOT NULL,
  checkpoint_lsn   pg_lsn NOT NULL,
  system_id        text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (store, version)
);

-- Fencing: a node's generation grows when it is declared dead; a node that finds its generation
-- changed writes nothing more. A draining node takes no new databases.
ALTER TABLE nodes
  ADD COLUMN generation bigint NOT NULL DEFAULT 1,
  ADD COLUMN fenced_at timestamptz,
  ADD COLUMN draining boolean NOT NULL DEFAULT false;

-- A database being moved (a drain): placed on its new node already, whose computes wait until the old
-- node has put the last of its data in the store and let go.
ALTER TABLE databases ADD COLUMN moving_from text;

-- 'sync': a commit is acknowledged only once its WAL is in the store.
ALTER TABLE databases ADD COLUMN durability text NOT NULL DEFAULT 'async' CHECK (durability IN ('async', 'sync'));
