/**
 * Postgres client programs (pg_dump, pg_restore) of one major. pg_dump refuses a server newer
 * than itself, and a pg_restore older than the pg_dump that wrote an archive cannot read it: the
 * `pgfleet db dump` / `restore` commands take the ones of the database's major exactly.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CliError } from './cli-error.ts';

/** Directories (`:`-separated) searched first for client programs of the needed major. */
export const CLIENT_BIN_VARIABLE = 'PGFLEET_PG_CLIENT_BIN';

export type ClientProgram = 'pg_dump' | 'pg_restore';

export interface ClientTool {
  file: string;
  /** The full version it reports (15.18). */
  version: string;
  major: number;
}

/** Where Debian and Ubuntu install each major's programs (postgresql-client-<major>). */
const debianDir = (major: number) => `/usr/lib/postgresql/${major}/bin`;

function versionOf(file: string): ClientTool | undefined {
  let out: string;
  try {
    out = execFileSync(file, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
  } catch {
    return undefined; // not there, not runnable, or Debian's wrapper with no client installed
  }
  const m = /\(PostgreSQL\) (\d+)(\.\d+)?/.exec(out);
  return m ? { file, version: m[1] + (m[2] ?? ''), major: Number(m[1]) } : undefined;
}

/**
 * The program of exactly `major`: in PGFLEET_PG_CLIENT_BIN's directories, where Debian installs
 * that major, then on PATH. None: a CliError that names the major and how to install it.
 */
export function findClientTool(program: ClientProgram, major: number, env: NodeJS.ProcessEnv = process.env): ClientTool {
  const dirs = [
    ...(env[CLIENT_BIN_VARIABLE] ?? '').split(path.delimiter),
    debianDir(major),
    ...(env.PATH ?? '').split(path.delimiter),
  ].filter(Boolean);
  const others: string[] = [];
  for (const dir of new Set(dirs)) {
    const file = path.join(dir, program);
    if (!fs.existsSync(file)) continue;
    const tool = versionOf(file);
    if (tool?.major === major) return tool;
    if (tool) others.push(`${program} ${tool.version} at ${file}`);
  }
  throw new CliError(
    `the database runs Postgres ${major} and needs ${program} ${major}, which is not installed`
    + `${others.length ? ` (found only ${[...new Set(others)].join(', ')})` : ''}. Looked in ${CLIENT_BIN_VARIABLE}, ${debianDir(major)} and PATH. `
    + `On Debian or Ubuntu: install postgresql-client-${major} from the PostgreSQL apt repository (https://apt.postgresql.org, see https://wiki.postgresql.org/wiki/Apt); `
    + `elsewhere, set ${CLIENT_BIN_VARIABLE} to a directory that holds ${program} ${major}`,
  );
}
