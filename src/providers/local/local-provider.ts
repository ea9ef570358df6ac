import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { ComputeSettings } from '../../config.ts';
import { ComputeStartError, ConfigError } from '../../errors.ts';
import type { PgInstall, PgInstalls } from '../../pg/install.ts';
import { type OsUser, currentUser, firstBlockedDir, giveTree, makeOwnedDir } from '../../pg/os-user.ts';
import { OsUserPool } from '../../pg/os-user-pool.ts';
import { PostgresServer, SOCKET_PORT, clearPreviousRun, initCluster } from '../../pg/server.ts';
import type { BranchRef, ComputeAddress, MeteredUsage, Provider, ProviderEvents, ProviderState, UsageSample } from '../provider.ts';
import { ComputeCgroups } from '../../limits/cgroups.ts';
import { LocalLayout } from './layout.ts';
import { directorySize } from './directory-size.ts';
import { type HistoryEnd, asAdmin, checkpointPosition, markHistoryEnd, walPosition } from './compute-admin.ts';
import type { Branching } from '../branching.ts';
import { archiveCommand } from './wal.ts';
import { type TenantSpec, applyTenantSpec } from './tenant-setup.ts';

const execFileAsync = promisify(execFile);

const SPEC_FILE = 'tenant.json';
const APPLIED_FILE = 'tenant.applied.json';
/** Written after a clean stop: where the branch's archived history ends. Removed at start. */
const HISTORY_END_FILE = 'history-end.json';
/** Compute settings a major has and older ones lack (a setting the server does not know stops it). */
const SETTINGS_FROM_MAJOR: { major: number; settings: Record<string, string | number> }[] = [
  // 18 runs 3 I/O worker processes per server by default; one serves a small compute (bench/density.ts).
  { major: 18, settings: { io_workers: 1 } },
];
export const ARCHIVE_DIR = 'archive';
export const BACKUPS_DIR = 'backups';

/** What the lifecycle (history, base backups) hears from the local provider. */
export interface LocalHistoryHooks {
  /** A branch's data directory was first made, as a copy of the template at `templatePgdata`. */
  materialized(ref: BranchRef, templatePgdata: string): Promise<void>;
  /** A compute stopped cleanly (its data directory is a consistent snapshot until the next start). */
  stopped(ref: BranchRef, end: HistoryEnd): Promise<void>;
}

export interface LocalProviderOptions {
  dataDir: string;
  runDir: string;
  /** The Postgres binaries, one install per major. */
  installs: PgInstalls;
  /** The OS user of the template clusters (initdb runs once per Postgres version, as it). */
  user: OsUser;
  /** The OS user of each database's computes (default: a pool of one user per database when root). */
  users?: OsUserPool;
  compute: ComputeSettings;
  /** Each running compute's cgroup, sized by its compute units (a host without cgroups: none). */
  cgroups?: ComputeCgroups;
  startTimeoutMs: number;
  log: Logger;
}

function specOf(ref: BranchRef): Omit<TenantSpec, 'extensions' | 'pgVersion'> {
  return { databaseName: ref.databaseName, ownerRole: ref.ownerRole, roles: [...new Set(ref.roles)].sort() };
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Computes as Postgres processes on this host: one cluster per branch, its data copied from
 * a template cluster of its database's Postgres major (initdb runs once per Postgres version),
 * listening on a private socket.
 */
export class LocalProvider implements Provider {
  readonly name = 'local';
  readonly rootDeletesAll = false;
  readonly layout: LocalLayout;
  private readonly servers = new Map<string, PostgresServer>();
  /** The database of each running compute, to resize all of a database's computes at once. */
  private readonly databaseOf = new Map<string, string>();
  readonly cgroups: ComputeCgroups;
  /** Set by the lifecycle once the catalog is open. */
  history: LocalHistoryHooks | undefined;
  branching: Branching | undefined;
  private readonly walAtStart = new Map<string, number>();
  /** Each major's template data directory, made at its first use. */
  private readonly templates = new Map<number, Promise<string>>();
  private readonly users: OsUserPool;
  /** Only this OS user (the gateway's) may connect to a compute's socket. */
  private readonly gatewayUser = currentUser().name;

  constructor(readonly opts: LocalProviderOptions, private readonly events: ProviderEvents = {}) {
    this.layout = new LocalLayout(opts.dataDir, opts.runDir);
    this.users = opts.users ?? new OsUserPool();
    this.cgroups = opts.cgroups ?? new ComputeCgroups({ kind: 'none', why: 'not configured' });
    const blocked = firstBlockedDir(opts.dataDir, opts.user);
    if (blocked) {
      throw new ConfigError('PGFLEET_DATA_DIR', `the compute user "${opts.user.name}" cannot enter ${blocked}; pick a data dir it can reach, or run chmod o+x ${blocked}`);
    }
  }

  /** Stops computes that a previous pgfleet run left behind. Returns how many there were. */
  async clearOrphans(): Promise<number> {
    let stopped = 0;
    const root = this.layout.dataRoot;
    if (!fs.existsSync(root)) return 0;
    for (const region of fs.readdirSync(root)) {
      for (const db of fs.readdirSync(path.join(root, region))) {
        for (const branch of fs.readdirSync(path.join(root, region, db))) {
          const pgdata = path.join(root, region, db, branch, 'pgdata');
          if (!fs.existsSync(path.join(pgdata, 'postmaster.pid'))) continue;
          if (await clearPreviousRun(pgdata, this.layout.socketDir(branch))) stopped++;
        }
      }
    }
    if (stopped) this.opts.log.info({ stopped }, 'stopped computes left by a previous run');
    return stopped;
  }

  get pgVersions(): readonly number[] {
    return this.opts.installs.majors;
  }

  /** The binaries' version (17.10); the major alone when they are not installed here. */
  postgresVersion(major: number): string {
    return this.opts.installs.has(major) ? this.opts.installs.versionOf(major) : String(major);
  }

  /** The binaries of the branch's major. */
  installFor(ref: BranchRef): PgInstall {
    if (!this.opts.installs.has(ref.pgVersion)) {
      throw new ComputeStartError(`database "${ref.databaseId}" runs Postgres ${ref.pgVersion}, which is not installed on this host (installed: ${this.pgVersions.join(', ')})`);
    }
    return this.opts.installs.get(ref.pgVersion);
  }

  /** The data directory of a major's template (the first base backup of each of its databases). */
  templatePgdata(major: number): string {
    return path.join(this.layout.templateDir(this.opts.installs.versionOf(major)), 'pgdata');
  }

  /** A major's template data directory, made once per Postgres version. */
  private ensureTemplate(install: PgInstall): Promise<string> {
    let template = this.templates.get(install.major);
    if (template) return template;
    template = (async () => {
      const pgdata = this.templatePgdata(install.major);
      const dir = path.dirname(pgdata);
      if (fs.existsSync(path.join(dir, 'ready'))) return pgdata;
      this.opts.log.info({ dir }, 'initializing the compute template');
      fs.rmSync(dir, { recursive: true, force: true });
      await initCluster(install, this.opts.user, pgdata);
      await this.compactTemplate(install, pgdata);
      fs.writeFileSync(path.join(dir, 'ready'), `${install.version}\n`);
      return pgdata;
    })().catch((err) => {
      this.templates.delete(install.major);
      throw err;
    });
    this.templates.set(install.major, template);
    return template;
  }

  /**
   * Rewrites the catalogs of the template's databases compactly (initdb leaves them ~15% larger
   * than their rows need) and drops the WAL that took: every database and branch is a copy.
   */
  private async compactTemplate(install: PgInstall, pgdata: string): Promise<void> {
    const socketDir = this.layout.socketDir(`template${install.major}`);
    const server = new PostgresServer({
      install, user: this.opts.user, pgdata, socketDir,
      logFile: path.join(path.dirname(pgdata), 'postgres.log'),
      settings: { wal_recycle: 'off', min_wal_size: '2MB', autovacuum: 'off' },
      startTimeoutMs: this.opts.startTimeoutMs,
    });
    await server.start();
    try {
      await asAdmin(socketDir, SOCKET_PORT, (c) => c.query('ALTER DATABASE template0 ALLOW_CONNECTIONS true'));
      for (const db of ['template0', 'template1', 'postgres']) await asAdmin(socketDir, SOCKET_PORT, (c) => c.query('VACUUM (FULL, FREEZE)'), db);
      await asAdmin(socketDir, SOCKET_PORT, (c) => c.query('ALTER DATABASE template0 ALLOW_CONNECTIONS false; CHECKPOINT; CHECKPOINT'));
    } finally {
      await server.stop('fast');
      fs.rmSync(socketDir, { recursive: true, force: true });
    }
  }

  private branchDir(ref: BranchRef): string {
    return this.layout.branchDir(ref.region, ref.databaseId, ref.branchId);
  }

  /** The OS user of this database's computes; it alone can enter the database's directory and sockets. */
  userOf(ref: BranchRef): OsUser {
    return this.users.userFor(this.layout.databaseDir(ref.region, ref.databaseId));
  }

  /** The branch's directory: pgdata, its WAL archive and base backups beside it. */
  dataDirOf(ref: BranchRef): string {
    return this.branchDir(ref);
  }

  /** The major of a branch's data on this host (its PG_VERSION); undefined when it was never started here. */
  dataPgVersion(region: string, databaseId: string, branchId: string): number | undefined {
    const text = readText(path.join(this.layout.branchDir(region, databaseId, branchId), 'pgdata', 'PG_VERSION'));
    return text === undefined ? undefined : Number(text);
  }

  /** Writes the tenant spec the branch's compute applies at its next start. */
  writeSpec(ref: BranchRef): void {
    const dir = this.branchDir(ref);
    // Made by the gateway (mode 0700); the database's OS user takes it over at its first start.
    if (!fs.existsSync(dir)) makeOwnedDir(dir, currentUser());
    fs.writeFileSync(path.join(dir, SPEC_FILE), JSON.stringify(specOf(ref)));
  }

  async create(ref: BranchRef): Promise<ProviderState> {
    // The data root and region dirs are the gateway's and only traversable; a database's dir is its user's alone.
    for (const d of [this.layout.dataRoot, path.join(this.layout.dataRoot, ref.region)]) {
      if (!fs.existsSync(d)) makeOwnedDir(d, currentUser(), 0o711);
    }
    const dbDir = this.layout.databaseDir(ref.region, ref.databaseId);
    // No OS user is claimed before the first start: most databases of a fleet are never running at once.
    if (!fs.existsSync(dbDir)) makeOwnedDir(dbDir, currentUser());
    this.writeSpec(ref);
    return {};
  }

  /** Copies the template (reflink where the filesystem can) into the branch on its first start. */
  async materialize(ref: BranchRef): Promise<string> {
    const pgdata = path.join(this.branchDir(ref), 'pgdata');
    if (fs.existsSync(path.join(pgdata, 'PG_VERSION'))) return pgdata;
    const template = await this.ensureTemplate(this.installFor(ref));
    const staging = `${pgdata}.tmp`;
    fs.rmSync(staging, { recursive: true, force: true });
    await execFileAsync('cp', ['-a', '--reflink=auto', template, staging]);
    giveTree(staging, this.userOf(ref));
    makeOwnedDir(path.join(this.branchDir(ref), ARCHIVE_DIR), this.userOf(ref));
    await this.history?.materialized(ref, template);
    fs.renameSync(staging, pgdata);
    return pgdata;
  }

  /** Postgres settings of a branch's compute; `archiveDir` is where its WAL is archived. */
  settings(ref: BranchRef, archiveDir = path.join(this.branchDir(ref), ARCHIVE_DIR)): Record<string, string | number> {
    const c = this.opts.compute;
    const ofMajor = SETTINGS_FROM_MAJOR.filter((s) => ref.pgVersion >= s.major).map((s) => s.settings);
    return Object.assign({
      archive_mode: 'on',
      archive_command: archiveCommand(archiveDir),
      shared_buffers: c.sharedBuffers,
      max_connections: c.maxConnections,
      work_mem: c.workMem,
      maintenance_work_mem: '16MB',
      max_wal_size: '64MB',
      // Finished 1 MB segments are removed, not kept for reuse: an idle database holds little WAL.
      min_wal_size: '2MB',
      wal_recycle: 'off',
      max_worker_processes: 4,
      max_parallel_workers: 0,
      max_parallel_workers_per_gather: 0,
      autovacuum_max_workers: 1,
      jit: 'off',
      huge_pages: 'off',
      unix_socket_permissions: '0700',
      cluster_name: ref.branchId,
      log_line_prefix: '%m [%p] ',
    }, ...ofMajor);
  }

  async start(ref: BranchRef): Promise<ComputeAddress> {
    const running = this.servers.get(ref.branchId);
    if (running?.running) return { kind: 'unix', socketPath: running.socketPath() };
    if (!fs.existsSync(path.join(this.branchDir(ref), SPEC_FILE))) await this.create(ref);
    const install = this.installFor(ref);
    const user = this.userOf(ref);
    // The database's files become its user's: at its first start, and data an earlier pgfleet wrote as one shared user.
    giveTree(this.layout.databaseDir(ref.region, ref.databaseId), user);
    giveTree(this.branchDir(ref), user); // a branch made after the database's first start
    const pgdata = await this.materialize(ref);
    const dataMajor = this.dataPgVersion(ref.region, ref.databaseId, ref.branchId);
    if (dataMajor !== ref.pgVersion) {
      throw new ComputeStartError(`the data of database "${ref.databaseId}" is of Postgres ${dataMajor}, but the catalog says ${ref.pgVersion}`);
    }
    const dir = this.branchDir(ref);
    fs.rmSync(path.join(dir, HISTORY_END_FILE), { force: true });
    makeOwnedDir(path.join(dir, ARCHIVE_DIR), user);
    this.walAtStart.set(ref.branchId, checkpointPosition(pgdata));
    await this.cgroups.drain(ref.branchId);
    const server = new PostgresServer({
      install,
      user,
      peerOnly: this.gatewayUser,
      pgdata,
      peerRoles: this.storedSpec(ref).roles,
      socketDir: this.layout.socketDir(ref.branchId),
      logFile: path.join(dir, 'postgres.log'),
      settings: this.settings(ref),
      startTimeoutMs: this.opts.startTimeoutMs,
    });
    await server.start();
    this.servers.set(ref.branchId, server);
    this.databaseOf.set(ref.branchId, ref.databaseId);
    server.on('exit', (code, signal) => {
      this.forget(ref.branchId);
      this.opts.log.warn({ branch: ref.branchId, code, signal }, 'compute exited unexpectedly');
      this.events.onComputeExit?.(ref.branchId, `exit code ${code}, signal ${signal}`);
    });
    try {
      this.cgroups.place(ref.branchId, server.pid!, this.computeUnitsOf(ref));
      // WAL of pgfleet's own setup (the database copied from template1) is not the tenant's.
      if (await this.applySpecIfChanged(ref, server)) this.walAtStart.set(ref.branchId, await walPosition(server.opts.socketDir, SOCKET_PORT));
    } catch (err) {
      this.servers.delete(ref.branchId);
      await server.stop();
      this.forget(ref.branchId);
      throw err;
    }
    return { kind: 'unix', socketPath: server.socketPath() };
  }

  /** The first start (and any start after a role change) creates what the tenant needs. */
  private async applySpecIfChanged(ref: BranchRef, server: PostgresServer): Promise<boolean> {
    const dir = this.branchDir(ref);
    // The extension allowlist is the configuration's, the major the binaries': a change of either re-applies the spec at the next start.
    const spec: TenantSpec = { ...this.storedSpec(ref), extensions: this.opts.compute.extensions, pgVersion: server.opts.install.major };
    const wanted = JSON.stringify(spec);
    if (readText(path.join(dir, APPLIED_FILE)) === wanted) return false;
    await applyTenantSpec(server.opts.socketDir, SOCKET_PORT, spec);
    await server.admitRoles(spec.roles);
    fs.writeFileSync(path.join(dir, APPLIED_FILE), wanted);
    return true;
  }

  /** The tenant spec written for the branch (writeSpec), else the ref's. */
  private storedSpec(ref: BranchRef): Omit<TenantSpec, 'extensions' | 'pgVersion'> {
    const text = readText(path.join(this.branchDir(ref), SPEC_FILE));
    return text === undefined ? specOf(ref) : JSON.parse(text);
  }

  private computeUnitsOf(ref: BranchRef): number {
    return ref.computeUnits ?? this.opts.compute.computeUnits;
  }

  /** A compute that stopped: its cgroup goes. */
  private forget(branchId: string): void {
    this.servers.delete(branchId);
    this.databaseOf.delete(branchId);
    this.cgroups.remove(branchId);
  }

  /**
   * pgfleet itself enforces suspend timeouts and quotas of local computes; a new size applies at
   * once to the database's running computes (their cgroups), and to the others at their start.
   */
  async updateSettings(ref: BranchRef): Promise<void> {
    for (const [branchId, databaseId] of this.databaseOf) {
      if (databaseId === ref.databaseId && this.servers.get(branchId)?.running) this.cgroups.resize(branchId, this.computeUnitsOf(ref));
    }
  }

  async syncRoles(ref: BranchRef): Promise<ProviderState> {
    this.writeSpec(ref);
    const server = this.servers.get(ref.branchId);
    if (server?.running) await this.applySpecIfChanged(ref, server);
    return {};
  }

  /** Local computes trust their private socket: pgfleet holds no secret of the role to rotate. */
  async resetPassword(): Promise<ProviderState> {
    return {};
  }

  /** pgfleet meters local computes itself. */
  readonly meters = [] as const;
  async usage(): Promise<MeteredUsage[]> {
    return [];
  }

  /**
   * Marks where the history ends (a commit, then a WAL switch, archived), then a fast shutdown,
   * which archives every finished segment. A cleanly stopped branch records that end.
   */
  async stop(ref: BranchRef): Promise<void> {
    const server = this.servers.get(ref.branchId);
    if (!server) return;
    const end = await markHistoryEnd(server.opts.socketDir, SOCKET_PORT).catch((err) => {
      this.opts.log.warn({ branch: ref.branchId, err: String(err) }, 'could not mark the end of the history before a stop');
      return undefined;
    });
    this.servers.delete(ref.branchId);
    await server.stop('fast');
    this.forget(ref.branchId);
    if (!end) return;
    fs.writeFileSync(path.join(this.branchDir(ref), HISTORY_END_FILE), JSON.stringify(end));
    await this.history?.stopped(ref, end).catch((err) => this.opts.log.warn({ branch: ref.branchId, err: String(err) }, 'base backup after stop failed'));
  }

  /** Where the history of a stopped branch ends; undefined when it never stopped cleanly. */
  historyEnd(ref: BranchRef): HistoryEnd | undefined {
    const text = readText(path.join(this.branchDir(ref), HISTORY_END_FILE));
    if (!text) return undefined;
    const end = JSON.parse(text) as { time: string; lsn: string };
    return { time: new Date(end.time), lsn: end.lsn };
  }

  /** Marks the end of a running compute's history now (see stop). */
  async markRunningHistoryEnd(ref: BranchRef): Promise<HistoryEnd> {
    const server = this.servers.get(ref.branchId);
    if (!server?.running) throw new Error(`the compute of ${ref.branchId} is not running`);
    return markHistoryEnd(server.opts.socketDir, SOCKET_PORT);
  }

  /** The socket directory of a running compute. */
  socketDirOf(ref: BranchRef): string | undefined {
    const server = this.servers.get(ref.branchId);
    return server?.running ? server.opts.socketDir : undefined;
  }

  async delete(ref: BranchRef): Promise<void> {
    const server = this.servers.get(ref.branchId);
    this.servers.delete(ref.branchId);
    await server?.stop('fast');
    this.forget(ref.branchId);
    fs.rmSync(this.branchDir(ref), { recursive: true, force: true });
    fs.rmSync(this.layout.socketDir(ref.branchId), { recursive: true, force: true });
    const dbDir = this.layout.databaseDir(ref.region, ref.databaseId);
    if (fs.existsSync(dbDir) && fs.readdirSync(dbDir).length === 0) fs.rmdirSync(dbDir);
    if (!fs.existsSync(dbDir)) this.users.release(dbDir);
  }

  status(ref: BranchRef): 'running' | 'stopped' {
    return this.servers.get(ref.branchId)?.running ? 'running' : 'stopped';
  }

  async sample(ref: BranchRef): Promise<UsageSample> {
    const server = this.servers.get(ref.branchId);
    // The data directory, the WAL archive and the base backups (a file shared by hard links counts its share in each branch).
    const storageBytes = await directorySize(this.branchDir(ref));
    if (!server?.running) return { storageBytes };
    return { storageBytes, walBytes: await walPosition(server.opts.socketDir, SOCKET_PORT), walBytesAtStart: this.walAtStart.get(ref.branchId) };
  }

  /** The running postmaster's pid (tests and diagnostics). */
  pid(branchId: string): number | undefined {
    return this.servers.get(branchId)?.pid;
  }


  async shutdown(): Promise<void> {
    const all = [...this.servers.values()];
    const branches = [...this.servers.keys()];
    this.servers.clear();
    await Promise.all(all.map((s) => s.stop('fast')));
    for (const branchId of branches) this.forget(branchId);
  }
}
