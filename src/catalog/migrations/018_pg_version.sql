-- The Postgres major of a database's computes, chosen at its creation (every branch runs it).
-- NULL only on rows made before this column: the gateway fills them at start (src/catalog/pg-version-backfill.ts).
ALTER TABLE databases ADD COLUMN pg_version smallint CHECK (pg_version > 0);
