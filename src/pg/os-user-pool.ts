/**
 * One OS user per database, so that a tenant who gains code execution in its compute cannot
 * reach another tenant's files, sockets or processes. Users are system users named
 * pgfleet_db<N>, made on demand and recycled: a claim is a file in a registry directory on this
 * host naming the directory the user owns; a claim whose directory is gone (the database was
 * deleted, or its data dir removed) is free again. The registry is host-wide because the users
 * are: every gateway on the host draws from the same pool. Not root: everything runs as this
 * process's own user and the pool hands that out.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type OsUser, currentUser, isRoot, resolveComputeUser } from './os-user.ts';

const PREFIX = 'pgfleet_db';
/** Ids of pool users: above any distribution's regular and system ranges, room for 100,000 databases. */
const POOL_IDS = { min: 200_000, max: 299_999 };
export const DEFAULT_REGISTRY = '/var/lib/pgfleet/os-users';
/** A fresh claim whose directory is not made yet is not stale. */
const CLAIM_GRACE_MS = 60_000;

function poolUsers(): string[] {
  return fs.readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':')[0]!).filter((n) => new RegExp(`^${PREFIX}\\d+$`).test(n));
}

function readClaim(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

export class OsUserPool {
  /** owned directory → user, for claims this process made or found. */
  private readonly byDir = new Map<string, OsUser>();

  constructor(private readonly registry = DEFAULT_REGISTRY) {}

  get isolating(): boolean {
    return isRoot();
  }

  /** The user that owns `dir` (a database's directory): its claim, or a free or new pool user. */
  userFor(dir: string): OsUser {
    if (!isRoot()) return currentUser();
    const known = this.byDir.get(dir);
    if (known) return known;
    fs.mkdirSync(this.registry, { recursive: true, mode: 0o700 });
    const names = poolUsers();
    const mine = names.find((n) => readClaim(path.join(this.registry, n)) === dir);
    const name = mine ?? names.find((n) => this.claim(n, dir)) ?? this.newUser(names, dir);
    const user = resolveComputeUser(name);
    this.byDir.set(dir, user);
    return user;
  }

  /** `dir` is gone: its user goes back to the pool. */
  release(dir: string): void {
    const user = this.byDir.get(dir);
    this.byDir.delete(dir);
    if (!user || !isRoot()) return;
    const file = path.join(this.registry, user.name);
    if (readClaim(file) === dir) fs.rmSync(file, { force: true });
  }

  /** Claims a user whose claim is missing or stale; true when it is now ours. */
  private claim(name: string, dir: string): boolean {
    const file = path.join(this.registry, name);
    const held = readClaim(file);
    if (held !== undefined && (fs.existsSync(held) || Date.now() - fs.statSync(file).mtimeMs < CLAIM_GRACE_MS)) return false;
    try {
      if (held === undefined) fs.writeFileSync(file, dir, { flag: 'wx', mode: 0o600 });
      else {
        // A stale claim: replace it atomically, then check no other gateway replaced it too.
        const tmp = `${file}.${process.pid}`;
        fs.writeFileSync(tmp, dir, { mode: 0o600 });
        fs.renameSync(tmp, file);
      }
    } catch {
      return false;
    }
    return readClaim(file) === dir;
  }

  private newUser(names: string[], dir: string): string {
    let n = names.reduce((max, name) => Math.max(max, Number(name.slice(PREFIX.length))), 0);
    for (;;) {
      const name = `${PREFIX}${String(++n).padStart(4, '0')}`;
      resolveComputeUser(name, POOL_IDS);
      if (this.claim(name, dir)) return name;
    }
  }
}
