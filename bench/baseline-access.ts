/**
 * Lets a baseline proxy (PgBouncer) reach a local compute the way pgfleet does. Computes admit
 * only the gateway's OS user on their socket (peer authentication with an ident map) and their
 * socket directory is the database's own OS user's; PgBouncer refuses to run as root. So the
 * bench runs PgBouncer as the database's OS user and adds that user to this one compute's
 * ident map, for the length of the bench: a bench-only door, never opened by pgfleet itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { branchRefOf, routeByEndpoint } from '../src/catalog/routes.ts';
import type { Core } from '../src/gateway.ts';
import type { OsUser } from '../src/pg/os-user.ts';

export async function admitBaselineProxy(core: Core, endpointId: string, socketDir: string): Promise<OsUser> {
  const route = await routeByEndpoint(core.catalog, endpointId);
  if (!route) throw new Error(`no endpoint ${endpointId}`);
  const ref = branchRefOf(route);
  const user = core.local.userOf(ref);
  if (!user.switchUser) return user;
  const identFile = path.join(core.local.dataDirOf(ref), 'pgfleet_ident.conf');
  fs.appendFileSync(identFile, `gateway ${user.name} all\n`);
  const admin = new pg.Client({ host: socketDir, port: 5432, user: 'pgfleet_admin', database: 'postgres' });
  await admin.connect();
  await admin.query('SELECT pg_reload_conf()');
  await admin.end();
  return user;
}
