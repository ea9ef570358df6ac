/**
 * What every fresh gateway makes for itself before it serves: the embedded catalog's initdb and the
 * compute template (initdb, compaction). That is seconds of CPU a gateway, and the suite starts about
 * a hundred. The run's `before` script (test/seed.ts) has pgfleet make them once; a fresh data dir
 * then starts with copies, and pgfleet takes them as a node takes what an earlier start of its own
 * left: the catalog is migrated, the template stored in the store and recorded. Fleets are not
 * seeded, so fetching the fleet's template from the store stays tested, and without a seed (a file
 * run on its own with node) every gateway makes its own, as before.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './repo-root.ts';

/** The sources and binaries a catalog or template is made by: a seed made by others is never used. */
const SHAPED_BY = [
  'package-lock.json', 'src/pg/server.ts', 'src/pg/install.ts', 'src/pg/os-user.ts', 'src/catalog/catalog.ts',
  'src/providers/local/templates.ts', 'src/providers/local/compute-admin.ts', 'src/providers/local/layout.ts',
];

export function seedDir(): string {
  const hash = crypto.createHash('sha256');
  for (const file of SHAPED_BY) hash.update(fs.readFileSync(path.join(repoRoot, file)));
  return path.join(os.tmpdir(), `pgfleet-test-seed-${hash.digest('hex').slice(0, 16)}`);
}

/** Copies the run's seed (when there is one) into a fresh, empty data dir; one not made yet is pgfleet's to make. */
export function seedDataDir(dataDir: string): void {
  const seed = seedDir();
  if (!fs.existsSync(path.join(seed, 'ready')) || !fs.existsSync(dataDir) || fs.readdirSync(dataDir).length > 0) return;
  for (const part of ['catalog', 'templates']) {
    execFileSync('cp', ['-a', '--reflink=auto', path.join(seed, part), path.join(dataDir, part)]);
  }
}

/** Lets pgfleet make a catalog and the default major's template in a scratch data dir, and keeps them as the seed. */
export async function makeSeed(): Promise<string> {
  const seed = seedDir();
  if (fs.existsSync(path.join(seed, 'ready'))) return seed;
  const { testConfig } = await import('./helpers.ts');
  const { CATALOG_OS_USER, startCore } = await import('../src/gateway.ts');
  const { createLogger } = await import('../src/log.ts');
  const { initCluster } = await import('../src/pg/server.ts');
  const { PgInstalls } = await import('../src/pg/install.ts');
  const { resolveComputeUser } = await import('../src/pg/os-user.ts');

  const config = testConfig({}, { seed: false });
  const core = await startCore(config, createLogger('error'));
  await core.stop(); // a stop waits for the template the start began making
  const staging = fs.mkdtempSync(`${seed}-staging-`);
  fs.chmodSync(staging, 0o711); // reachable by the catalog's OS user, as a data dir is
  fs.renameSync(path.join(config.dataDir, 'templates'), path.join(staging, 'templates'));
  // The catalog as initdb leaves it: the gateway's own has been migrated and used.
  const installs = PgInstalls.discover(config.pgBin, resolveComputeUser(config.computeUser), config.dataDir);
  await initCluster(installs.get(undefined), resolveComputeUser(CATALOG_OS_USER), path.join(staging, 'catalog', 'pgdata'));
  fs.writeFileSync(path.join(staging, 'ready'), '');
  fs.rmSync(config.dataDir, { recursive: true, force: true });
  try {
    fs.renameSync(staging, seed);
  } catch {
    fs.rmSync(staging, { recursive: true, force: true }); // another run made it first
  }
  return seed;
}
