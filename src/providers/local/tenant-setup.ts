import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { type PostgresServer, SOCKET_PORT } from '../../pg/server.ts';
import { asAdmin } from './compute-admin.ts';
import { ensureMigrationRecord } from './migration-record.ts';

/** What a branch's compute must hold for its tenant: the database, its login roles, the extensions it may create. */
export interface TenantSpec {
  databaseName: string;
  ownerRole: string;
  roles: string[];
  /** Extensions a tenant may create (trusted ones only ever: tenants are not superusers). */
  extensions: string[];
  /** The server's major: what CREATEROLE allows depends on it. */
  pgVersion: number;
  /** The database's migration key (src/migrations): what proves a migration record is pgfleet's. */
  migrationKey?: string;
}

/**
 * Before 16, CREATEROLE let a role grant itself any non-superuser role, pg_execute_server_program
 * and pg_read_server_files included; from 16 it needs ADMIN OPTION on the role granted.
 */
const CREATEROLE_SAFE_FROM = 16;

const ident = (name: string) => pg.escapeIdentifier(name);

/**
 * Creates what is missing, as the admin superuser over the private socket. The owner is
 * never a superuser and gets none of the server-file or program roles (nor, before Postgres 16,
 * CREATEROLE, which could grant them); other roles inherit
 * the owner's rights, as on Neon where every role shares one set of privileges.
 */
export async function applyTenantSpec(socketDir: string, port: number, spec: TenantSpec): Promise<void> {
  await asAdmin(socketDir, port, async (client) => {
    const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [spec.roles.concat(spec.ownerRole)]);
    const existing = new Set(rows.map((r) => r.rolname));
    const createRole = spec.pgVersion >= CREATEROLE_SAFE_FROM ? 'CREATEROLE' : 'NOCREATEROLE';
    if (!existing.has(spec.ownerRole)) {
      await client.query(`CREATE ROLE ${ident(spec.ownerRole)} LOGIN NOSUPERUSER CREATEDB ${createRole} NOREPLICATION NOBYPASSRLS`);
    } else if (createRole === 'NOCREATEROLE') {
      await client.query(`ALTER ROLE ${ident(spec.ownerRole)} NOCREATEROLE`);
    }
    for (const role of spec.roles) {
      if (role === spec.ownerRole || existing.has(role)) continue;
      await client.query(`CREATE ROLE ${ident(role)} LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS IN ROLE ${ident(spec.ownerRole)}`);
    }
    // template1 first: the tenant's database, and any it creates later, are copies of it.
    await asAdmin(socketDir, port, (db) => guardExtensions(db, spec.extensions), 'template1');
    const { rows: present } = await client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname IN ($1, 'postgres')`, [spec.databaseName]);
    if (!present.some((d) => d.datname === spec.databaseName)) {
      if (present.some((d) => d.datname === 'postgres')) {
        // The template's empty `postgres` database becomes the tenant's: one copy of the
        // catalogs (~6.5 MB) fewer on disk in every database and branch, and no WAL for a copy.
        await client.query(`ALTER DATABASE postgres RENAME TO ${ident(spec.databaseName)}`);
        await client.query(`ALTER DATABASE ${ident(spec.databaseName)} OWNER TO ${ident(spec.ownerRole)}`);
        await client.query(`COMMENT ON DATABASE ${ident(spec.databaseName)} IS NULL`);
      } else {
        // FILE_COPY: the files are copied and only a small record is logged, not the whole template
        // (WAL_LOG would put ~7 MB into the WAL archive).
        await client.query(`CREATE DATABASE ${ident(spec.databaseName)} OWNER ${ident(spec.ownerRole)} STRATEGY = FILE_COPY`);
      }
    }
    const { rows: databases } = await client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template1'`);
    for (const { datname } of databases) await asAdmin(socketDir, port, (c) => guardExtensions(c, spec.extensions), datname);
    if (spec.migrationKey !== undefined) await asAdmin(socketDir, port, (c) => ensureMigrationRecord(c, spec.migrationKey!), spec.databaseName);
  });
}

/**
 * The extension allowlist of one database: an event trigger after CREATE/ALTER EXTENSION that
 * undoes the command when any installed extension (CASCADE ones too) is not on the list. Its
 * function lives in a schema of the superuser's, so the tenant (owner of the database and of
 * public) can neither drop nor replace it; only a superuser may drop an event trigger.
 */
async function guardExtensions(client: pg.Client, allowed: string[]): Promise<void> {
  const list = pg.escapeLiteral(allowed.join(', '));
  const array = `ARRAY[${['plpgsql', ...allowed].map((e) => pg.escapeLiteral(e)).join(', ')}]::name[]`;
  await client.query(`
    CREATE SCHEMA IF NOT EXISTS pgfleet;
    REVOKE ALL ON SCHEMA pgfleet FROM PUBLIC;
    GRANT USAGE ON SCHEMA pgfleet TO PUBLIC;
    CREATE OR REPLACE FUNCTION pgfleet.extension_allowlist() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
    DECLARE refused text;
    BEGIN
      SELECT string_agg(extname, ', ') INTO refused FROM pg_extension WHERE extname <> ALL (${array});
      IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'extension % is not allowed on this server', refused
          USING ERRCODE = '42501', HINT = 'Allowed extensions: ' || ${list} || '.';
      END IF;
    END $fn$;
    DROP EVENT TRIGGER IF EXISTS pgfleet_extension_allowlist;
    CREATE EVENT TRIGGER pgfleet_extension_allowlist ON ddl_command_end
      WHEN TAG IN ('CREATE EXTENSION', 'ALTER EXTENSION') EXECUTE FUNCTION pgfleet.extension_allowlist();`);
}

/** Inside pgdata, so that it travels with the data (a backup, a branch) and a rehydrated copy knows what it holds. */
const APPLIED_FILE = 'pgfleet.applied.json';

/** Applies the spec unless the compute's data holds it already (as written after the last apply); true when applied. */
export async function applyTenantSpecIfChanged(server: PostgresServer, spec: TenantSpec): Promise<boolean> {
  const wanted = JSON.stringify(spec);
  const applied = path.join(server.opts.pgdata, APPLIED_FILE);
  if (readText(applied) === wanted) return false;
  await applyTenantSpec(server.opts.socketDir, SOCKET_PORT, spec);
  await server.admitRoles(spec.roles);
  fs.writeFileSync(applied, wanted);
  return true;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
