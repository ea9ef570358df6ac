-- Events and the webhook outbox. An event is recorded in the transaction of the change it tells
-- of (or right after it), and so is one delivery per webhook that wants it: the outbox is in the
-- catalog, so it survives a restart or a kill -9 of any gateway.

-- txid orders events: a transaction that commits later may hold a smaller seq, but every
-- transaction whose xid is below the snapshot's xmin has ended, so reading only those rows
-- never skips one that commits afterwards.
CREATE TABLE events (
  seq          bigserial PRIMARY KEY,
  txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  id           text NOT NULL UNIQUE,
  type         text NOT NULL,
  -- NULL: an operator's event (node.drained, node.lost). No foreign keys: events outlive what they tell of.
  partner_id   text,
  database_id  text,
  data         jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX events_order ON events (txid, seq);
CREATE INDEX events_partner_order ON events (partner_id, txid, seq);
CREATE INDEX events_database_order ON events (database_id, txid, seq) WHERE database_id IS NOT NULL;
CREATE INDEX events_created ON events (created_at);

-- A partner's webhook endpoints (partner_id NULL: the operator's, which hear every partner's events too).
CREATE TABLE webhooks (
  id             text PRIMARY KEY,
  partner_id     text REFERENCES partners(id) ON DELETE CASCADE,
  url            text NOT NULL,
  -- event types or patterns: database.created, database.*, *
  event_types    text[] NOT NULL,
  -- the signing secret, sealed with PGFLEET_SECRET_KEY (it is shown once, when made)
  secret_sealed  text NOT NULL,
  description    text,
  created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhooks_partner ON webhooks (partner_id);

-- One event to one webhook. In order per (webhook, ordering key = the database): only the
-- oldest pending delivery of a line is sent; a gateway claims it with a lease (lease_until), so
-- several gateways deliver it once, and a gateway killed mid-delivery leaves it to the next.
CREATE TABLE webhook_deliveries (
  id               bigserial PRIMARY KEY,
  webhook_id       text NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
  event_seq        bigint NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
  txid             xid8 NOT NULL,
  ordering_key     text NOT NULL,
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  lease_until      timestamptz,
  claimed_by       text,
  last_status      integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at      timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_line ON webhook_deliveries (webhook_id, ordering_key, txid, event_seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_of_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_failing ON webhook_deliveries (finished_at) WHERE state = 'failed' OR last_error IS NOT NULL;

CREATE TABLE webhook_attempts (
  delivery_id  bigint NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
  attempt      integer NOT NULL,
  started_at   timestamptz NOT NULL,
  duration_ms  integer NOT NULL,
  -- the HTTP status of the answer; NULL when none came (refused, timed out, internal address)
  status       integer,
  error        text,
  node_id      text NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
);

-- Hourly usage records sent as usage.recorded events: each revision of a (database, hour) carries
-- what changed since the previous one, and totals is what they add up to, so a late flush (or
-- Neon's late consumption data) becomes one more record and nothing is counted twice.
CREATE TABLE usage_reports (
  database_id  text NOT NULL,
  hour         timestamptz NOT NULL,
  revision     integer NOT NULL,
  totals       jsonb NOT NULL,
  event_id     text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (database_id, hour, revision)
);
CREATE INDEX usage_reports_hour ON usage_reports (hour);
