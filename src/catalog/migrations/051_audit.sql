-- Every API mutation: who (the key's id, never the key), what, on what, from where, and how it ended.
CREATE TABLE audit_log (
  seq             bigserial PRIMARY KEY,
  at              timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- the partner concerned: its own key's, or the one an operator acted on (NULL: the operator's own business)
  partner_id      text,
  actor           text NOT NULL CHECK (actor IN ('operator', 'partner')),
  key_id          text NOT NULL,
  client          text,
  action          text NOT NULL,
  method          text NOT NULL,
  route           text NOT NULL,
  target          text,
  request_id      text NOT NULL,
  source_address  text NOT NULL,
  status          integer NOT NULL,
  result          text NOT NULL,
  -- the request body, secrets replaced
  request         jsonb
);
CREATE INDEX audit_log_partner ON audit_log (partner_id, seq);
CREATE INDEX audit_log_at ON audit_log (at);
