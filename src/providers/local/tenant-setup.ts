import pg from 'pg';
import { asAdmin } from './compute-admin.ts';

/** What a branch's compute must hold for its tenant: the database and its login roles. */
export interface TenantSpec {
  databaseName: string;
  ownerRole: string;
  roles: string[];
}

const ident = (name: string) => pg.escapeIdentifier(name);

/**
 * Creates what is missing, as the admin superuser over the private socket. The owner is
 * never a superuser and gets none of the server-file or program roles; other roles inherit
 * the owner's rights, as on Neon where every role shares one set of privileges.
 */
export async function applyTenantSpec(socketDir: string, port: number, spec: TenantSpec): Promise<void> {
  await asAdmin(socketDir, port, async (client) => {
    const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname = ANY($1)', [spec.roles.concat(spec.ownerRole)]);
    const existing = new Set(rows.map((r) => r.rolname));
    if (!existing.has(spec.ownerRole)) {
      await client.query(`CREATE ROLE ${ident(spec.ownerRole)} LOGIN NOSUPERUSER CREATEDB CREATEROLE NOREPLICATION NOBYPASSRLS`);
    }
    for (const role of spec.roles) {
      if (role === spec.ownerRole || existing.has(role)) continue;
      await client.query(`CREATE ROLE ${ident(role)} LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS IN ROLE ${ident(spec.ownerRole)}`);
    }
    const db = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [spec.databaseName]);
    if (db.rowCount === 0) {
      // FILE_COPY: the files are copied and only a small record is logged, not the whole template
      // (WAL_LOG would put ~7 MB into the WAL archive of every new database).
      await client.query(`CREATE DATABASE ${ident(spec.databaseName)} OWNER ${ident(spec.ownerRole)} STRATEGY = FILE_COPY`);
    }
  });
}
