-- Autoscaling (issue 29): a database's compute size is a range, floor to ceiling, in compute units
-- (multiples of 0.25 from 0.25 to 16). NULL on a database = its partner's default_autoscaling, else
-- PGFLEET_AUTOSCALING. compute_units (016) stays as it was written; the range replaces it.
ALTER TABLE databases
  ADD COLUMN autoscaling_min_cu numeric(5,2),
  ADD COLUMN autoscaling_max_cu numeric(5,2),
  ADD CONSTRAINT databases_autoscaling_range CHECK (
    (autoscaling_min_cu IS NULL) = (autoscaling_max_cu IS NULL)
    AND autoscaling_min_cu BETWEEN 0.25 AND 16 AND autoscaling_max_cu BETWEEN 0.25 AND 16
    AND autoscaling_min_cu <= autoscaling_max_cu
    AND autoscaling_min_cu * 4 = floor(autoscaling_min_cu * 4) AND autoscaling_max_cu * 4 = floor(autoscaling_max_cu * 4));
UPDATE databases SET autoscaling_min_cu = compute_units, autoscaling_max_cu = compute_units WHERE compute_units IS NOT NULL;

ALTER TABLE partners
  ADD COLUMN default_autoscaling_min_cu numeric(5,2),
  ADD COLUMN default_autoscaling_max_cu numeric(5,2),
  ADD CONSTRAINT partners_autoscaling_range CHECK (
    (default_autoscaling_min_cu IS NULL) = (default_autoscaling_max_cu IS NULL)
    AND default_autoscaling_min_cu <= default_autoscaling_max_cu);

-- The size a branch's compute holds now, as its node last recorded it (0 while not running).
ALTER TABLE computes ADD COLUMN current_cu numeric(5,2) NOT NULL DEFAULT 0;

-- Every size a compute took, for the charts (kept 7 days; 0 = it stopped).
CREATE TABLE compute_sizes (
  branch_id    text NOT NULL,
  database_id  text NOT NULL,
  at           timestamptz NOT NULL DEFAULT clock_timestamp(),
  cu           numeric(5,2) NOT NULL
);
CREATE INDEX compute_sizes_database ON compute_sizes (database_id, at);
CREATE INDEX compute_sizes_at ON compute_sizes (at);
