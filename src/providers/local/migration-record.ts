import pg from 'pg';

/**
 * `pgfleet.migrations`, the record of the fleet-wide migrations applied to a database (src/migrations).
 * It is the superuser's: tenants may read it, not write it. A migration runs as the database's owner
 * and records itself in its own transaction through `pgfleet.record_migration(name, job, ms, proof)`,
 * a SECURITY DEFINER function that inserts only when `proof` is sha256 of the database's migration key
 * (kept in `pgfleet.migration_key`, which only the superuser can read) and the name: only the gateway
 * can compute it. Names are [A-Za-z0-9._-], so no two (key, name) strings collide.
 */
export async function ensureMigrationRecord(client: pg.ClientBase, key: string): Promise<void> {
  await client.query(`
    CREATE SCHEMA IF NOT EXISTS pgfleet;
    REVOKE ALL ON SCHEMA pgfleet FROM PUBLIC;
    GRANT USAGE ON SCHEMA pgfleet TO PUBLIC;
    CREATE TABLE IF NOT EXISTS pgfleet.migrations (
      name        text PRIMARY KEY,
      job_id      text NOT NULL,
      duration_ms int,
      applied_at  timestamptz NOT NULL DEFAULT now()
    );
    REVOKE ALL ON pgfleet.migrations FROM PUBLIC;
    GRANT SELECT ON pgfleet.migrations TO PUBLIC;
    CREATE TABLE IF NOT EXISTS pgfleet.migration_key (key text NOT NULL);
    REVOKE ALL ON pgfleet.migration_key FROM PUBLIC;
    DELETE FROM pgfleet.migration_key;
    INSERT INTO pgfleet.migration_key VALUES (${pg.escapeLiteral(key)});
    CREATE OR REPLACE FUNCTION pgfleet.record_migration(p_name text, p_job text, p_ms int, p_proof text) RETURNS void
      LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    BEGIN
      IF p_proof IS DISTINCT FROM (SELECT encode(sha256(convert_to(k.key || ':' || p_name, 'UTF8')), 'hex') FROM pgfleet.migration_key k LIMIT 1) THEN
        RAISE EXCEPTION 'only pgfleet records migrations' USING ERRCODE = '42501';
      END IF;
      INSERT INTO pgfleet.migrations (name, job_id, duration_ms) VALUES (p_name, p_job, p_ms);
    END $fn$;
    REVOKE ALL ON FUNCTION pgfleet.record_migration(text, text, int, text) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION pgfleet.record_migration(text, text, int, text) TO PUBLIC;`);
}
