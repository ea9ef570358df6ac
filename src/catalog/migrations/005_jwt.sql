-- A partner's own JWT issuer: connections may authenticate with the partner's tokens,
-- verified against its JWKS (fetched from jwks_uri, or given inline).
CREATE TABLE partner_jwt_issuers (
  partner_id      text PRIMARY KEY REFERENCES partners(id) ON DELETE CASCADE,
  issuer          text NOT NULL,
  audience        text NOT NULL,
  jwks_uri        text,
  jwks            jsonb,
  -- The claim that names the partner's user (databases.user_id).
  user_claim      text NOT NULL DEFAULT 'sub',
  -- Optional claims naming the database or the endpoint directly; NULL = not used.
  database_claim  text,
  endpoint_claim  text,
  algorithms      text[] NOT NULL,
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  CHECK ((jwks_uri IS NULL) <> (jwks IS NULL)),
  -- One issuer and audience pick exactly one partner.
  UNIQUE (issuer, audience)
);
