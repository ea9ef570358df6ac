/**
 * Lets a baseline proxy (PgBouncer) reach a local compute the way pgfleet does. Computes admit
 * only the gateway's OS user on their socket (peer authentication with an ident map) and their
 * socket directory is the database's own OS user's; PgBouncer refuses to run as root. So the
 * bench runs PgBouncer as the database's OS user and adds that user to this one compute's
 * ident map, for the length of the bench: a bench-only door, never opened by pgfleet itself.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { branchRefOf, routeByEndpoint } from '../src/catalog/routes.ts';
import type { Core } from '../src/gateway.ts';
import { type OsUser, spawnIdentity } from '../src/pg/os-user.ts';
import { freePort } from '../test/proxy-helpers.ts';

export async function admitBaselineProxy(core: Core, endpointId: string, socketDir: string): Promise<OsUser> {
  const route = await routeByEndpoint(core.catalog, endpointId);
  if (!route) throw new Error(`no endpoint ${endpointId}`);
  const ref = branchRefOf(route);
  const user = core.local.files.userOf(ref);
  if (!user.switchUser) return user;
  const identFile = path.join(core.local.dataDirOf(ref), 'pgfleet_ident.conf');
  fs.appendFileSync(identFile, `gateway ${user.name} all\n`);
  const admin = new pg.Client({ host: socketDir, port: 5432, user: 'pgfleet_admin', database: 'template1' });
  await admin.connect();
  await admin.query('SELECT pg_reload_conf()');
  await admin.end();
  return user;
}

export interface BaselinePgBouncer {
  port: number;
  process: ChildProcess;
}

/**
 * PgBouncer before one local compute, as pgfleet's proxy is: TLS for clients with pgfleet's
 * certificate, SCRAM against the same verifier, its pool settings given by the bench.
 */
export async function startPgBouncer(
  core: Core, opts: { dataDir: string; endpointId: string; databaseName: string; role: string; socketDir: string; settings: string[] },
): Promise<BaselinePgBouncer> {
  const { dataDir, role, socketDir, databaseName } = opts;
  const verifier = (await core.catalog.query(
    'SELECT r.scram_verifier FROM roles r JOIN branches b ON b.database_id = r.database_id JOIN endpoints e ON e.branch_id = b.id WHERE e.id = $1 AND r.name = $2',
    [opts.endpointId, role])).rows[0].scram_verifier;
  const bdir = path.join(dataDir, 'pgbouncer');
  fs.mkdirSync(bdir, { mode: 0o700 });
  const port = await freePort();
  fs.copyFileSync(path.join(dataDir, 'tls', 'server.crt'), path.join(bdir, 'server.crt'));
  fs.copyFileSync(path.join(dataDir, 'tls', 'server.key'), path.join(bdir, 'server.key'));
  fs.writeFileSync(path.join(bdir, 'users.txt'), `"${role}" "${verifier}"\n`);
  fs.writeFileSync(path.join(bdir, 'pgbouncer.ini'), [
    '[databases]', `${databaseName} = host=${socketDir} port=5432 dbname=${databaseName} user=${role}`,
    '[pgbouncer]', 'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'unix_socket_dir =', ...opts.settings,
    'auth_type = scram-sha-256', `auth_file = ${bdir}/users.txt`,
    'client_tls_sslmode = require', `client_tls_cert_file = ${bdir}/server.crt`, `client_tls_key_file = ${bdir}/server.key`,
    `logfile = ${bdir}/pgbouncer.log`, 'log_connections = 0', 'log_disconnections = 0', '',
  ].join('\n'));
  const user = await admitBaselineProxy(core, opts.endpointId, socketDir);
  if (user.switchUser) for (const f of [...fs.readdirSync(bdir).map((x) => path.join(bdir, x)), bdir]) fs.chownSync(f, user.uid, user.gid);
  const child = spawn('pgbouncer', ['-q', path.join(bdir, 'pgbouncer.ini')], { ...spawnIdentity(user), stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (await new Promise<boolean>((r) => net.connect(port, '127.0.0.1').once('connect', function (this: net.Socket) { this.destroy(); r(true); }).once('error', () => r(false)))) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, process: child };
}
