import fs from 'node:fs';
import path from 'node:path';
import { generateApiKey, hashApiKey } from './secrets.ts';

/** The gateway's own data directory: traversable (not listable) by the compute user. */
export function prepareDataDir(dataDir: string): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o711 });
}

/**
 * One gateway per data directory: a second one would fight the first over its computes.
 * A lock left by a process that is gone is taken over. Returns the release function.
 */
// A pid file naming this very process is stale after a restart in a container (same pid each
// boot), so a second gateway inside this process is caught by this set instead.
const lockedHere = new Set<string>();

export function lockDataDir(dataDir: string): () => void {
  const file = path.join(dataDir, 'gateway.pid');
  if (lockedHere.has(path.resolve(dataDir))) throw new Error(`this process already runs a pgfleet on the data dir ${dataDir}`);
  try {
    const pid = Number(fs.readFileSync(file, 'utf8'));
    if (pid && pid !== process.pid) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM';
      }
      if (alive) throw new Error(`another pgfleet (pid ${pid}) is using the data dir ${dataDir}`);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.writeFileSync(file, String(process.pid), { mode: 0o600 });
  lockedHere.add(path.resolve(dataDir));
  return () => {
    lockedHere.delete(path.resolve(dataDir));
    try {
      if (Number(fs.readFileSync(file, 'utf8')) === process.pid) fs.rmSync(file);
    } catch {
      /* already gone */
    }
  };
}

/**
 * The operator key's hash. Without PGFLEET_ADMIN_KEY, a key is generated at first start,
 * kept (mode 0600) under the data dir, and printed this once, never logged.
 */
export function ensureAdminKey(dataDir: string, configured: string | undefined, announce: (key: string, file: string) => void): string {
  if (configured) return hashApiKey(configured);
  const file = path.join(dataDir, 'admin-key');
  try {
    return hashApiKey(fs.readFileSync(file, 'utf8').trim());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = generateApiKey('pgf_admin');
  fs.writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  announce(key, file);
  return hashApiKey(key);
}
