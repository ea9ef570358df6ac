import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { PgInstall } from './install.ts';
import { type OsUser, makeOwnedDir, spawnIdentity } from './os-user.ts';
import { type LaunchedProcess, launchPostmaster } from './launcher.ts';

const execFileAsync = promisify(execFile);

/** Every server listens on this port number; only the socket file name depends on it. */
export const SOCKET_PORT = 5432;
export const ADMIN_ROLE = 'pgfleet_admin';
/** initdb's --wal-segsize (MB): small segments keep an empty cluster small and a WAL switch cheap. */
export const WAL_SEGMENT_MB = 1;
/** From 16 an ident map's pg-username may be `all`; before, each role is listed. */
const IDENT_ALL_FROM = 16;
/** How long a reloaded ident map may take to admit a session. */
const IDENT_RELOAD_WAIT_MS = 5_000;

/** Creates a cluster with initdb (as the compute user): used for templates and the catalog. */
export async function initCluster(install: PgInstall, user: OsUser, pgdata: string): Promise<void> {
  makeOwnedDir(path.dirname(pgdata), user);
  const args = [
    '-D', pgdata, '-U', ADMIN_ROLE, '--auth=trust', '--encoding=UTF8', '--locale=C',
    // 1 MB WAL segments: a fresh cluster is ~25 MB instead of ~40, and copies of it are cheaper.
    `--wal-segsize=${WAL_SEGMENT_MB}`, '--no-sync', '--no-instructions',
  ];
  await execFileAsync(path.join(install.binDir, 'initdb'), args, { ...spawnIdentity(user), env: { LC_ALL: 'C', PATH: process.env.PATH } });
  await execFileAsync('sync', ['-f', pgdata]);
}

function readPidFile(pgdata: string): { pid: number; status: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, status: (lines[7] ?? '').trim() };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A postmaster of this data directory: alive, and its working directory is the data dir. */
function runningPostmaster(pgdata: string): number | undefined {
  const info = readPidFile(pgdata);
  if (!info || !isAlive(info.pid)) return undefined;
  try {
    return fs.realpathSync(`/proc/${info.pid}/cwd`) === fs.realpathSync(pgdata) ? info.pid : undefined;
  } catch {
    return undefined;
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/**
 * Makes a data directory startable after a previous pgfleet run: a postmaster still running
 * there (an orphan) gets a fast shutdown, and lock files of dead or unrelated processes go.
 * Returns true when an orphan was stopped.
 */
export async function clearPreviousRun(pgdata: string, socketDir: string): Promise<boolean> {
  const orphan = runningPostmaster(pgdata);
  if (orphan !== undefined) {
    process.kill(orphan, 'SIGINT');
    if (!(await waitForExit(orphan, 30_000))) {
      process.kill(orphan, 'SIGQUIT');
      await waitForExit(orphan, 5_000);
    }
  }
  for (const f of [path.join(pgdata, 'postmaster.pid'), path.join(socketDir, `.s.PGSQL.${SOCKET_PORT}.lock`), path.join(socketDir, `.s.PGSQL.${SOCKET_PORT}`)]) {
    fs.rmSync(f, { force: true });
  }
  return orphan !== undefined;
}

export interface ServerOptions {
  install: PgInstall;
  user: OsUser;
  pgdata: string;
  socketDir: string;
  logFile: string;
  /** Postgres settings passed as -c name=value. */
  settings: Record<string, string | number>;
  /**
   * Only this OS user (the gateway's) may connect, as any role, over the Unix socket (peer
   * authentication with an ident map), instead of the cluster's own trust: the compute's own OS
   * user, and anyone else, is refused. Unset: the cluster's pg_hba.conf applies.
   */
  peerOnly?: string;
  /** With peerOnly before Postgres 16: the roles it may connect as, beside the admin role (see admitRoles). */
  peerRoles?: readonly string[];
  startTimeoutMs: number;
}

function logTail(file: string): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.split('\n').filter(Boolean).slice(-5).join(' | ');
  } catch {
    return '';
  }
}

/**
 * One running postmaster. Start resolves the moment postmaster.pid says "ready" (watched with
 * inotify, not polled). Emits 'exit' (code, signal) when the process ends for any reason.
 */
export class PostgresServer extends EventEmitter {
  private child: LaunchedProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopping = false;
  private peerRoles: readonly string[];

  constructor(readonly opts: ServerOptions) {
    super();
    this.peerRoles = opts.peerRoles ?? [];
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    const { install, user, pgdata, socketDir, logFile, settings } = this.opts;
    makeOwnedDir(socketDir, user);
    await clearPreviousRun(pgdata, socketDir);
    const args = ['-D', pgdata, '-k', socketDir, '-p', String(SOCKET_PORT), '-c', 'listen_addresses='];
    for (const [k, v] of Object.entries({ ...settings, ...this.peerOnlyFiles() })) args.push('-c', `${k}=${v}`);
    // Watch before spawning so that no pid-file write can be missed.
    let watcher: fs.FSWatcher | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      // Ready once the pid file says so and the launcher has told its pid (either may come first).
      let spawned = false;
      const check = () => {
        if (spawned && readPidFile(pgdata)?.status === 'ready') resolve();
      };
      watcher = fs.watch(pgdata, (_event, name) => {
        if (name === 'postmaster.pid') check();
      });
      watcher.on('error', reject);
      const child = launchPostmaster({
        file: path.join(install.binDir, 'postgres'), args, ...spawnIdentity(user), logFile,
        env: { LC_ALL: 'C', PATH: process.env.PATH, TZ: 'UTC' },
      }, pgdata);
      this.child = child;
      child.once('spawn', () => {
        spawned = true;
        check();
      });
      this.exited = new Promise((done) => {
        const ended = (code: number | null, signal: NodeJS.Signals | null) => {
          this.child = undefined;
          const expected = this.stopping;
          this.stopping = false;
          reject(new Error(`postgres exited during start (code ${code}, signal ${signal}): ${logTail(logFile)}`));
          done();
          if (!expected) this.emit('exit', code, signal);
        };
        child.once('exit', ended);
        child.once('error', (err: Error) => {
          reject(err);
          if (this.child === child) this.child = undefined;
          done();
        });
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`postgres did not become ready in ${this.opts.startTimeoutMs} ms: ${logTail(logFile)}`)), this.opts.startTimeoutMs);
    });
    try {
      await Promise.race([ready, timeout]);
    } catch (err) {
      await this.stop('immediate');
      throw err;
    } finally {
      clearTimeout(timer);
      watcher?.close();
    }
  }

  /** Writes the hba and ident files of peerOnly beside the data directory; the settings that point at them. */
  private peerOnlyFiles(): Record<string, string> {
    const { peerOnly, pgdata, user } = this.opts;
    if (!peerOnly) return {};
    const dir = path.dirname(pgdata);
    const files = {
      // The replication line admits pgfleet's WAL receiver (src/providers/local/wal-streamer.ts); tenants have no REPLICATION.
      hba_file: [path.join(dir, 'pgfleet_hba.conf'), 'local all all peer map=gateway\nlocal replication all peer map=gateway\n'],
      ident_file: [path.join(dir, 'pgfleet_ident.conf'), this.identMap()],
    } as const;
    const settings: Record<string, string> = {};
    for (const [setting, [file, text]] of Object.entries(files)) {
      fs.writeFileSync(file, text, { mode: 0o600 });
      if (user.switchUser) fs.chownSync(file, user.uid, user.gid);
      settings[setting] = file;
    }
    return settings;
  }

  private identMap(): string {
    const { peerOnly, install } = this.opts;
    if (install.major >= IDENT_ALL_FROM) return `gateway ${peerOnly} all\n`;
    return [ADMIN_ROLE, ...this.peerRoles].map((role) => `gateway ${peerOnly} ${role}\n`).join('');
  }

  /**
   * Lets peerOnly connect as these roles too. Before 16 the ident map lists them: it is rewritten
   * and reloaded, and this resolves once a new session as each new role is admitted (the roles
   * must exist). From 16 the map admits every role already.
   */
  async admitRoles(roles: readonly string[]): Promise<void> {
    const added = roles.filter((r) => !this.peerRoles.includes(r));
    if (!this.opts.peerOnly || this.opts.install.major >= IDENT_ALL_FROM || added.length === 0) return;
    this.peerRoles = [...this.peerRoles, ...added];
    this.peerOnlyFiles();
    const session = (user: string) => new pg.Client({ host: this.opts.socketDir, port: SOCKET_PORT, user, database: 'template1' });
    const admin = session(ADMIN_ROLE);
    await admin.connect();
    await admin.query('SELECT pg_reload_conf()').finally(() => admin.end());
    const deadline = Date.now() + IDENT_RELOAD_WAIT_MS;
    for (const role of added) {
      for (;;) {
        const probe = session(role);
        try {
          await probe.connect();
          break;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`the compute did not admit role ${role} after its ident map was reloaded: ${(err as Error).message}`);
          await new Promise((r) => setTimeout(r, 20));
        } finally {
          await probe.end().catch(() => {});
        }
      }
    }
  }

  /** fast: roll back sessions and checkpoint; immediate: crash-like, for failed starts. */
  async stop(mode: 'fast' | 'immediate' = 'fast', timeoutMs = 30_000): Promise<void> {
    const child = this.child;
    if (!child) return this.exited;
    this.stopping = true;
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  socketPath(): string {
    return path.join(this.opts.socketDir, `.s.PGSQL.${SOCKET_PORT}`);
  }
}
