-- Several gateways share one catalog. Each node (a pgfleet process with its own data dir) says
-- where other nodes reach it and how much room it has; a local database's data lives on one node.
CREATE TABLE nodes (
  id            text PRIMARY KEY,
  -- host:port of its node listener (TLS with the fleet's pre-shared key).
  address       text NOT NULL,
  max_computes  integer NOT NULL,
  running       integer NOT NULL DEFAULT 0,
  -- Its public signing keys (a JWK Set): tokens any gateway issues verify on every gateway.
  jwks          jsonb NOT NULL DEFAULT '{"keys": []}',
  started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- NULL: a database of another provider, or one made before nodes were recorded (served where it is).
ALTER TABLE databases ADD COLUMN node_id text;
CREATE INDEX databases_node ON databases (node_id) WHERE node_id IS NOT NULL;
-- The fencing token of the newest wake lock holder that started the compute.
ALTER TABLE computes ADD COLUMN wake_fence bigint NOT NULL DEFAULT 0;
