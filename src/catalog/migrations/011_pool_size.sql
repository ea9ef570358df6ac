-- Transaction pooling: backends per pool of a database's -pooler endpoint (NULL = PGFLEET_POOL_SIZE).
ALTER TABLE databases ADD COLUMN pool_size integer CHECK (pool_size BETWEEN 1 AND 10000);
