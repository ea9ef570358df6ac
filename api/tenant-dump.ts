/**
 * `pgfleet db dump` / `restore`: pg_dump and pg_restore of the database's major, through the
 * proxy like any client, as the owner role with a short-lived pgfleet token as its password.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { isLocalDomain } from '../src/connection-uri.ts';
import { CliError } from './cli-error.ts';
import { type ClientProgram, findClientTool } from './client-tools.ts';

/** What the API's database answer tells a client tool. */
export interface DumpedDatabase {
  id: string;
  pg_version: number;
  endpoint_id: string;
  host: string;
  port: number;
  database: string;
}

/** A gateway token for one role: pg_dump and pg_restore each connect once, at their start. */
export interface SessionToken {
  token: string;
  role: string;
}

/** A token outlives nothing but the connection's start; 60 s is the least pgfleet issues. */
export const DUMP_TOKEN_TTL_SECONDS = 60;

/**
 * libpq's environment for a session as the token's role: the endpoint in `options` with
 * `auth=jwt` (the token is the password, never in argv), host `localhost` under a local domain.
 * PGHOST, PGSSLMODE and PGSSLROOTCERT of the caller's environment are kept.
 */
export function sessionEnv(db: DumpedDatabase, session: SessionToken, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const domain = db.host.slice(db.endpoint_id.length + 1);
  return {
    ...env,
    PGHOST: env.PGHOST || (isLocalDomain(domain) ? 'localhost' : db.host),
    PGPORT: String(db.port),
    PGUSER: session.role,
    PGPASSWORD: session.token,
    PGSSLMODE: env.PGSSLMODE || 'require',
    PGOPTIONS: `endpoint=${db.endpoint_id} auth=jwt`,
  };
}

const execFileAsync = promisify(execFile);

/** pgfleet's extension allowlist, in every tenant database: a dump holds it, only a superuser may make it. */
const ALLOWLIST_TRIGGER = / EVENT TRIGGER - pgfleet_extension_allowlist /;

async function run(program: ClientProgram, db: DumpedDatabase, args: string[], session: SessionToken, toStdout: boolean): Promise<void> {
  const tool = findClientTool(program, db.pg_version);
  const child = spawn(tool.file, args, { env: sessionEnv(db, session), stdio: ['ignore', toStdout ? 'inherit' : 'ignore', 'inherit'] });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0) throw new CliError(`${program} ${tool.version} (${tool.file}) failed with exit code ${code} for database ${db.id}`);
}

/**
 * pg_dump's custom format (what pg_restore reads) of the tenant's database, without owners and
 * grants (the roles of the database restored into are its own), and without the `pgfleet` schema
 * (the extension allowlist pgfleet keeps in every database). `out` undefined: stdout.
 */
export function dump(db: DumpedDatabase, session: SessionToken, out: string | undefined): Promise<void> {
  const args = ['--format=custom', '--no-owner', '--no-privileges', '--exclude-schema=pgfleet', `--dbname=${db.database}`];
  return run('pg_dump', db, out === undefined ? args : [...args, `--file=${out}`], session, out === undefined);
}

/**
 * Restores a dump into the database in one transaction: all of it, or (at the first error)
 * nothing; pgfleet's own event trigger in it is left out (the target has its own). `clean`:
 * objects of the dump that exist already are dropped first.
 */
export async function restore(db: DumpedDatabase, session: SessionToken, input: string, clean: boolean): Promise<void> {
  const tool = findClientTool('pg_restore', db.pg_version);
  let contents: string;
  try {
    contents = (await execFileAsync(tool.file, ['--list', input], { maxBuffer: 256 * 1024 * 1024 })).stdout;
  } catch (err) {
    throw new CliError(`${input} is not an archive ${tool.file} can read: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-restore-'));
  try {
    const list = path.join(dir, 'contents');
    fs.writeFileSync(list, contents.split('\n').filter((line) => !ALLOWLIST_TRIGGER.test(line)).join('\n'));
    await run('pg_restore', db, [
      '--no-owner', '--no-privileges', '--exit-on-error', '--single-transaction', `--dbname=${db.database}`,
      ...(clean ? ['--clean', '--if-exists'] : []), `--use-list=${list}`, input,
    ], session, false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
