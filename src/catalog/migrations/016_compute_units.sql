-- Compute size per database in compute units (1 CU = 1 CPU, 4 GiB); NULL = PGFLEET_COMPUTE_UNITS.
ALTER TABLE databases ADD COLUMN compute_units numeric(5,2) CHECK (compute_units BETWEEN 0.25 AND 16 AND compute_units * 4 = floor(compute_units * 4));
