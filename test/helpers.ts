import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Catalog } from '../src/catalog/catalog.ts';
import type { PreparedStatement } from '../src/catalog/prepared.ts';
import { type Config, loadConfig } from '../src/config.ts';
import type { BranchRef } from '../src/providers/provider.ts';
import { repoRoot } from './repo-root.ts';
import { seedDataDir } from './seed-cache.ts';

/** A fresh data dir under the system temp dir (reachable by the compute user). */
export function tmpDataDir(label = 'pgfleet'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${label}-`));
  fs.chmodSync(dir, 0o711);
  return dir;
}

/** A fresh data dir for a gateway, seeded (test/seed-cache.ts): it starts as one that ran before. */
export function seededDataDir(): string {
  const dir = tmpDataDir();
  seedDataDir(dir);
  return dir;
}

/**
 * What a test adds to the environment of a `pgfleet start` it spawns: two proxy workers (the default
 * on CI's 2-core host would be one), so that every such test crosses the paths between workers.
 */
export const SPAWNED_GATEWAY_ENV = { PGFLEET_WORKERS: '2' };

/** A gateway's config on a fresh data dir, seeded (test/seed-cache.ts) unless told not to be. */
export function testConfig(overrides: Record<string, string> = {}, { seed = true } = {}): Config {
  const dataDir = overrides.PGFLEET_DATA_DIR ?? (seed ? seededDataDir() : tmpDataDir());
  return loadConfig({
    PGFLEET_DATA_DIR: dataDir,
    PGFLEET_API_PORT: '0',
    PGFLEET_PROXY_PORT: '0',
    PGFLEET_LOG_LEVEL: 'warn',
    PGFLEET_ADMIN_KEY: 'test-admin-key-0123456789',
    ...overrides,
  });
}

export function testRef(overrides: Partial<BranchRef> = {}): BranchRef {
  const id = crypto.randomBytes(4).toString('hex');
  return {
    databaseId: `db-${id}`,
    branchId: `br-${id}`,
    root: true,
    region: 'local',
    databaseName: 'app',
    ownerRole: 'alice',
    roles: ['alice'],
    suspendTimeoutSeconds: 300,
    quotas: {},
    autoscaling: null,
    pgVersion: 17,
    durability: 'async',
    providerState: {},
    ...overrides,
  };
}

/** Pids of live postmasters whose command line mentions dir. */
export function postmastersUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (path.basename(cmd[0] ?? '') === 'postgres' && cmd.includes('-D') && cmd.some((a) => a.startsWith(dir))) pids.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

export function uidOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
}

export { repoRoot };
/** `node --import` of pgfleet's TypeScript loader, as bin/pgfleet.js runs it. */
export const TS_LOADER = path.join(repoRoot, 'bin', 'load-ts.mjs');
/** Runs a TypeScript file in node itself (no wrapper process, so its pid is the program's). */
export const nodeTs = (file: string): [string, string[]] => [process.execPath, ['--import', TS_LOADER, path.join(repoRoot, file)]];

/** Waits until check() holds, polling every everyMs; fails naming what it waited for after timeoutMs. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `pgfleet start` in its own process with env added; resolves with its API URL and proxy port once it is ready. */
export async function startProcess(env: Record<string, string>): Promise<{ child: ChildProcess; api: string; proxyPort: number; httpPort?: number }> {
  if (env.PGFLEET_DATA_DIR) seedDataDir(env.PGFLEET_DATA_DIR);
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'pgfleet.js'), 'start'], {
    env: { ...process.env, PGFLEET_LOG_FORMAT: 'json', ...SPAWNED_GATEWAY_ENV, ...env },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const ready = buf.split('\n').map((l) => (l.startsWith('{') ? JSON.parse(l) : {})).find((l) => l.msg === 'pgfleet is ready');
      if (ready) resolve({ child, api: ready.api, proxyPort: ready.proxy_port, httpPort: ready.http_port });
    });
    child.once('exit', (code) => reject(new Error(`pgfleet exited early with ${code}`)));
  });
}

/** The catalog statements run while fn runs, as their SQL text ('(transaction)' for each transaction begun). */
export async function catalogStatements(catalog: Catalog, fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const query = catalog.query.bind(catalog);
  const tx = catalog.tx.bind(catalog);
  catalog.query = ((statement: string | PreparedStatement, values?: unknown[]) => {
    seen.push(typeof statement === 'string' ? statement : statement.text);
    return query(statement, values);
  }) as typeof catalog.query;
  catalog.tx = ((run) => {
    seen.push('(transaction)');
    return tx(run);
  }) as typeof catalog.tx;
  try {
    await fn();
  } finally {
    catalog.query = query;
    catalog.tx = tx;
  }
  return seen;
}
