import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The OS identity computes run as: the current one, or an unprivileged user when we are root. */
export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  /** True when processes must be spawned with uid/gid (we are root). */
  switchUser: boolean;
}

function lookup(name: string): { uid: number; gid: number } | undefined {
  for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

const USERADD_ATTEMPTS = 40;

/** This process's own OS identity. */
export function currentUser(): OsUser {
  const uid = process.getuid?.() ?? 0;
  return { name: os.userInfo().username, uid, gid: process.getgid?.() ?? uid, switchUser: false };
}

export const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * Where new users' ids are drawn from. The default system range (100-999) holds a few hundred
 * users, far fewer than the databases one host carries, so per-database users take ids from a
 * range of their own.
 */
export interface IdRange {
  min: number;
  max: number;
}

/** Postgres refuses to run as root: as root, use (and create when missing) an unprivileged user. */
export function resolveComputeUser(name: string, ids?: IdRange): OsUser {
  if (!isRoot()) return currentUser();
  let found = lookup(name);
  // useradd fails while another useradd holds /etc/passwd's lock (gateways on one host make users at once): retry.
  for (let attempt = 1; !found; attempt++) {
    try {
      const range = ids
        ? ['-K', `SYS_UID_MIN=${ids.min}`, '-K', `SYS_UID_MAX=${ids.max}`, '-K', `SYS_GID_MIN=${ids.min}`, '-K', `SYS_GID_MAX=${ids.max}`]
        : [];
      execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', ...range, name], { stdio: 'pipe' });
    } catch (err) {
      const message = String((err as { stderr?: Buffer }).stderr ?? err).trim();
      if (!lookup(name) && attempt >= USERADD_ATTEMPTS) throw new Error(`could not create the OS user "${name}": ${message}`);
      if (!lookup(name)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50 + Math.random() * 100);
    }
    found = lookup(name);
  }
  if (found.uid === 0) throw new Error(`the OS user "${name}" must not be root`);
  return { name, ...found, switchUser: true };
}

/** Gives a whole tree to user (when we are root and it is not theirs yet): data made by another user before. */
export function giveTree(dir: string, user: OsUser): void {
  if (!user.switchUser) return;
  const st = fs.statSync(dir);
  if (st.uid === user.uid && st.gid === user.gid) return;
  chownTree(dir, user);
}

/** Makes every file under dir user's (when we are root): copies of data another user owns. */
export function chownTree(dir: string, user: OsUser): void {
  if (user.switchUser) execFileSync('chown', ['-R', '--no-dereference', `${user.uid}:${user.gid}`, dir], { stdio: 'pipe' });
}

/** Spawn options that make a child run as the compute user. */
export function spawnIdentity(user: OsUser): { uid?: number; gid?: number } {
  return user.switchUser ? { uid: user.uid, gid: user.gid } : {};
}

/** Makes a directory owned by the compute user with the given mode (0700 for private ones). */
export function makeOwnedDir(dir: string, user: OsUser, mode = 0o700): void {
  // Missing parents must stay traversable for the compute user.
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o711 });
  fs.mkdirSync(dir, { recursive: true, mode });
  fs.chmodSync(dir, mode);
  if (user.switchUser) fs.chownSync(dir, user.uid, user.gid);
}

/**
 * The first ancestor of `target` (or target itself) that `user` cannot enter, if any.
 * Checked by permission bits because root can enter anything and so cannot simply try.
 */
export function firstBlockedDir(target: string, user: OsUser): string | undefined {
  if (!user.switchUser) return undefined;
  let dir = path.resolve(target);
  const chain: string[] = [];
  for (;;) {
    chain.unshift(dir);
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  for (const d of chain) {
    let st: fs.Stats;
    try {
      st = fs.statSync(d);
    } catch {
      return undefined; // does not exist yet: created by us, owned by the user
    }
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return d;
  }
  return undefined;
}
