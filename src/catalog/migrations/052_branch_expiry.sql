-- Ephemeral branches: a branch with expires_at is deleted, with its compute, at that time.
-- claimed_until: a gateway deleting it now (another one leaves it alone until then).
CREATE TABLE branch_expiry (
  branch_id      text PRIMARY KEY REFERENCES branches(id) ON DELETE CASCADE,
  expires_at     timestamptz NOT NULL,
  claimed_until  timestamptz
);
CREATE INDEX branch_expiry_due ON branch_expiry (expires_at);
