-- Idempotency keys are kept as hashes, and the stored answer (which carries a password) is
-- encrypted with a key derived from the idempotency key itself: the catalog alone reveals neither.
DROP TABLE idempotency_keys;
CREATE TABLE idempotency_keys (
  partner_id    text NOT NULL REFERENCES partners(id) ON DELETE CASCADE,
  key_hash      text NOT NULL,
  request_hash  text NOT NULL,
  -- NULL while the first request with this key is in progress.
  status        integer,
  -- AES-256-GCM: 12-byte IV, 16-byte tag, then the ciphertext of the JSON answer.
  response      bytea,
  created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (partner_id, key_hash)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
