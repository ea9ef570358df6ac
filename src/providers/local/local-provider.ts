import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog.ts';
import type { ComputeSettings } from '../../config.ts';
import { ComputeStartError, ConfigError } from '../../errors.ts';
import { ComputeCgroups } from '../../limits/cgroups.ts';
import type { PgInstall, PgInstalls } from '../../pg/install.ts';
import { type OsUser, currentUser, firstBlockedDir, giveTree, makeOwnedDir } from '../../pg/os-user.ts';
import { OsUserPool } from '../../pg/os-user-pool.ts';
import { PostgresServer, SOCKET_PORT, clearPreviousRun } from '../../pg/server.ts';
import { storeKeys } from '../../storage/keys.ts';
import type { SealedStore } from '../../storage/sealed-store.ts';
import type { StorageSettings } from '../../storage/storage-config.ts';
import type { Branching, BranchRef, ComputeAddress, MeteredUsage, Provider, ProviderEvents, ProviderState, UsageSample } from '../provider.ts';
import type { BaseBackups } from './base-backups.ts';
import { readCache, writeCache } from './branch-cache.ts';
import { type HistoryEnd, asAdmin, checkpointPosition, ensureSlot, markHistoryEnd, walPosition } from './compute-admin.ts';
import { computeSettings, writeRuntimeSettings } from './compute-settings.ts';
import type { Histories, History } from './histories.ts';
import { LocalLayout } from './layout.ts';
import { directorySize } from './directory-size.ts';
import { rehydrate } from './rehydrate.ts';
import type { Templates } from './templates.ts';
import { type TenantSpec, applyTenantSpec } from './tenant-setup.ts';
import { WalArchive, segmentName, segmentStart } from './wal-archive.ts';
import { REPLICATION_SLOT, WalStreamer } from './wal-streamer.ts';
import { StoreWatch, type Watched } from './store-watch.ts';
import type { StorageGauges, StorageMetrics } from './storage-metrics.ts';

const SPEC_FILE = 'tenant.json';
/** Inside pgdata, so that it travels with the data (a backup, a branch) and a rehydrated copy knows what it holds. */
const APPLIED_FILE = 'pgfleet.applied.json';
/** How long a stop waits for the store to take the compute's last WAL before it stops anyway (the WAL stays here). */
const STOP_STORE_WAIT_MS = 10_000;

/** This node as the fleet knows it: whether it may still write to the store. */
export interface NodeIdentity {
  id: string;
  generation(): number;
  /** False once the node was fenced (declared dead) or its lease ran out. */
  canWrite(): boolean;
}

/** Where local databases' data and history live, and who this node is. */
export interface LocalStorage {
  catalog: Catalog;
  store: SealedStore;
  histories: Histories;
  templates: Templates;
  backups: BaseBackups;
  node: NodeIdentity;
  settings: StorageSettings;
  /** A branch gets a new base backup once its newest is older than this. */
  backupIntervalMs: number;
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
  storage: LocalStorage;
  log: Logger;
}

/** Where a branch's files are on this node. */
export type BranchPlace = Pick<BranchRef, 'region' | 'databaseId' | 'branchId'>;

interface Running extends Watched {
  server: PostgresServer;
  history: History;
  databaseId: string;
  walAtStart: number;
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
 * Computes as Postgres processes on this host: one cluster per branch, listening on a private
 * socket. The store is the home of each branch's data and history: its WAL streams there while
 * the compute runs, its base backups go there, and the files on this node are a cache of it,
 * brought back from the store when they are missing or stale.
 */
export class LocalProvider implements Provider {
  readonly name = 'local';
  readonly rootDeletesAll = false;
  readonly layout: LocalLayout;
  private readonly running = new Map<string, Running>();
  readonly cgroups: ComputeCgroups;
  branching: Branching | undefined;
  private readonly users: OsUserPool;
  /** Only this OS user (the gateway's) may connect to a compute's socket. */
  private readonly gatewayUser = currentUser().name;
  private readonly storage: LocalStorage;
  private readonly watch: StoreWatch;
  /** Counted once the gateway's metrics exist. */
  metrics: StorageMetrics | undefined;
  /** The file work under way per branch (withFiles). */
  private readonly busy = new Map<string, Promise<unknown>>();
  /** What each database holds in the store, in bytes, as last listed. */
  private readonly storeBytes = new Map<string, { bytes: number; at: number }>();

  constructor(readonly opts: LocalProviderOptions, private readonly events: ProviderEvents = {}) {
    this.watch = new StoreWatch({
      settings: opts.storage.settings, log: opts.log,
      setCommitsWait: (w, wait) => this.setCommitsWait(w as Running, wait),
      endStuck: (w, pids, reason) => {
        this.events.onStuckCommits?.(w.branchId, pids, reason);
        void asAdmin(w.socketDir, SOCKET_PORT, (c) => c.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]))
          .catch((err) => this.opts.log.warn({ branch: w.branchId, err: String(err) }, 'could not end backends whose commits waited too long'));
      },
    });
    this.layout = new LocalLayout(opts.dataDir, opts.runDir);
    this.users = opts.users ?? new OsUserPool();
    this.cgroups = opts.cgroups ?? new ComputeCgroups({ kind: 'none', why: 'not configured' });
    this.storage = opts.storage;
    const blocked = firstBlockedDir(opts.dataDir, opts.user);
    if (blocked) {
      throw new ConfigError('PGFLEET_DATA_DIR', `the compute user "${opts.user.name}" cannot enter ${blocked}; pick a data dir it can reach, or run chmod o+x ${blocked}`);
    }
  }

  /** Stops computes that a previous pgfleet run left behind. Returns how many there were. */
  async clearOrphans(): Promise<number> {
    let stopped = 0;
    for (const { branchDir, branchId } of this.localBranches()) {
      const pgdata = path.join(branchDir, 'pgdata');
      if (!fs.existsSync(path.join(pgdata, 'postmaster.pid'))) continue;
      if (await clearPreviousRun(pgdata, this.layout.socketDir(branchId))) stopped++;
    }
    if (stopped) this.opts.log.info({ stopped }, 'stopped computes left by a previous run');
    return stopped;
  }

  /** Every branch with files on this node. */
  localBranches(): { region: string; databaseId: string; branchId: string; branchDir: string }[] {
    const root = this.layout.dataRoot;
    const out = [];
    if (!fs.existsSync(root)) return [];
    for (const region of fs.readdirSync(root)) {
      for (const databaseId of fs.readdirSync(path.join(root, region))) {
        for (const branchId of fs.readdirSync(path.join(root, region, databaseId))) {
          if (/\.(staging|old)$/.test(branchId)) continue;
          out.push({ region, databaseId, branchId, branchDir: path.join(root, region, databaseId, branchId) });
        }
      }
    }
    return out;
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

  private branchDir(ref: BranchPlace): string {
    return this.layout.branchDir(ref.region, ref.databaseId, ref.branchId);
  }

  /** The OS user of this database's computes; it alone can enter the database's directory and sockets. */
  userOf(ref: BranchRef): OsUser {
    return this.users.userFor(this.layout.databaseDir(ref.region, ref.databaseId));
  }

  /** The branch's directory on this node: pgdata, its cache state, its spec and log. */
  dataDirOf(ref: BranchRef): string {
    return this.branchDir(ref);
  }

  /** The major of a branch's data on this host (its PG_VERSION); undefined when it is not here. */
  dataPgVersion(region: string, databaseId: string, branchId: string): number | undefined {
    const text = readText(path.join(this.layout.branchDir(region, databaseId, branchId), 'pgdata', 'PG_VERSION'));
    return text === undefined ? undefined : Number(text);
  }

  /** Writes the tenant spec the branch's compute applies at its next start. */
  writeSpec(ref: BranchRef): void {
    const dir = this.branchDir(ref);
    // The data root and region dirs are the gateway's and only traversable; a database's dir is its user's alone.
    for (const d of [this.layout.dataRoot, path.join(this.layout.dataRoot, ref.region)]) {
      if (!fs.existsSync(d)) makeOwnedDir(d, currentUser(), 0o711);
    }
    const dbDir = this.layout.databaseDir(ref.region, ref.databaseId);
    // No OS user is claimed before the first start: most databases of a fleet are never running at once.
    if (!fs.existsSync(dbDir)) makeOwnedDir(dbDir, currentUser());
    if (!fs.existsSync(dir)) makeOwnedDir(dir, currentUser());
    fs.writeFileSync(path.join(dir, SPEC_FILE), JSON.stringify(specOf(ref)));
  }

  /** Nothing is made until the first start: a database that never runs costs nothing, here or in the store. */
  async create(): Promise<ProviderState> {
    return {};
  }

  /** Postgres settings of a branch's compute. */
  settings(ref: BranchRef): Record<string, string | number> {
    return computeSettings(ref, this.opts.compute);
  }

  archiveOf(databaseId: string): WalArchive {
    return new WalArchive(this.storage.store, databaseId);
  }

  /**
   * Where streaming of a history starts: where the store's copy ends, or its first segment's start
   * when it holds none. A history no writer holds ended exactly where the catalog says; one this
   * node held when it stopped uncleanly is looked up in the store.
   */
  private async streamFrom(history: History): Promise<bigint> {
    if (history.writerNode === null) return history.endLsn > history.startLsn ? history.endLsn : segmentStart(history.startLsn);
    const archive = this.archiveOf(history.databaseId);
    const end = await archive.end(history.id, history.tli, history.endLsn);
    if (end > history.endLsn || (await archive.segment(history.id, segmentName(history.tli, history.endLsn)))) return end;
    return segmentStart(history.endLsn);
  }

  /** Runs fn alone for the branch's files here: a start, an eviction and a copy of them never overlap. */
  withFiles<T>(branchId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.busy.get(branchId) ?? Promise.resolve();
    const run = previous.catch(() => {}).then(fn);
    const settled = run.catch(() => {});
    this.busy.set(branchId, settled);
    void settled.then(() => {
      if (this.busy.get(branchId) === settled) this.busy.delete(branchId);
    });
    return run;
  }

  start(ref: BranchRef): Promise<ComputeAddress> {
    return this.withFiles(ref.branchId, () => this.startHere(ref));
  }

  private async startHere(ref: BranchRef): Promise<ComputeAddress> {
    const running = this.running.get(ref.branchId);
    if (running?.server.running) return { kind: 'unix', socketPath: running.server.socketPath() };
    const install = this.installFor(ref);
    await this.checkPlacedHere(ref);
    const user = this.userOf(ref);
    const dir = this.branchDir(ref);
    // The spec the last role change wrote wins; on a node that never held the branch, the catalog's (this ref's).
    if (!fs.existsSync(path.join(dir, SPEC_FILE))) this.writeSpec(ref);
    // The database's files become its user's: at its first start, and data an earlier pgfleet wrote as one shared user.
    giveTree(this.layout.databaseDir(ref.region, ref.databaseId), user);
    const socketDir = this.layout.socketDir(ref.branchId);
    let history: History;
    try {
      const brought = await rehydrate({ ...this.storage, catalog: this.storage.catalog, nodeId: this.storage.node.id, localTemplate: (b) => this.storage.templates.localFor(b) },
        ref, dir, { install, user, socketDir, settings: this.settings(ref) });
      history = brought.history;
      if (brought.from !== 'cache') {
        this.metrics?.rehydrations.inc({ from: brought.from });
        this.opts.log.info({ branch: ref.branchId, from: brought.from, history: history.id }, 'branch data brought from the store');
      }
    } catch (err) {
      if (err instanceof ComputeStartError) throw err;
      throw new ComputeStartError(`the data of database "${ref.databaseId}" could not be brought from the storage (${this.storage.store.location}): ${(err as Error).message}`);
    }
    giveTree(dir, user);
    const pgdata = path.join(dir, 'pgdata');
    const dataMajor = this.dataPgVersion(ref.region, ref.databaseId, ref.branchId);
    if (dataMajor !== ref.pgVersion) {
      throw new ComputeStartError(`the data of database "${ref.databaseId}" is of Postgres ${dataMajor}, but the catalog says ${ref.pgVersion}`);
    }
    writeRuntimeSettings(pgdata, user, { commitsWaitForStore: ref.durability === 'sync' });
    const walAtStart = checkpointPosition(pgdata);
    await this.cgroups.drain(ref.branchId);
    const server = new PostgresServer({
      install, user, peerOnly: this.gatewayUser, pgdata, peerRoles: this.storedSpec(ref).roles, socketDir,
      logFile: path.join(dir, 'postgres.log'), settings: this.settings(ref), startTimeoutMs: this.opts.startTimeoutMs,
    });
    await server.start();
    let streamer: WalStreamer | undefined;
    try {
      this.cgroups.place(ref.branchId, server.pid!, this.computeUnitsOf(ref));
      await ensureSlot(socketDir, SOCKET_PORT, REPLICATION_SLOT);
      streamer = new WalStreamer({
        socketDir, pgdata, archive: this.archiveOf(ref.databaseId), historyId: history.id, tli: history.tli, start: await this.streamFrom(history),
        sync: ref.durability === 'sync', maxLagMs: this.storage.settings.maxLagMs, canWrite: () => this.storage.node.canWrite(), log: this.opts.log.child({ branch: ref.branchId }),
      });
      streamer.on('error', (err) => {
        this.metrics?.uploadFailures.inc();
        this.opts.log.warn({ branch: ref.branchId, err: String(err) }, 'WAL upload to the store failed; retrying');
      });
      streamer.on('fenced', () => this.fenced(ref.branchId));
      await streamer.start();
      await this.storage.histories.claim(history.id, this.storage.node.id, this.storage.node.generation());
      writeCache(dir, { historyId: history.id, end: null, stoppedAt: null });
      const entry: Running = {
        server, streamer, history, databaseId: ref.databaseId, walAtStart, durability: ref.durability, branchId: ref.branchId, socketDir, backlogged: false,
      };
      this.running.set(ref.branchId, entry);
      server.on('exit', (code, signal) => {
        this.forget(ref.branchId);
        this.opts.log.warn({ branch: ref.branchId, code, signal }, 'compute exited unexpectedly');
        this.events.onComputeExit?.(ref.branchId, `exit code ${code}, signal ${signal}`);
      });
      // WAL of pgfleet's own setup (the tenant's database and roles) is not the tenant's.
      if (await this.applySpecIfChanged(ref, server)) entry.walAtStart = await walPosition(socketDir, SOCKET_PORT);
    } catch (err) {
      this.running.delete(ref.branchId);
      streamer?.abort();
      await server.stop();
      this.cgroups.remove(ref.branchId);
      throw err;
    }
    return { kind: 'unix', socketPath: server.socketPath() };
  }

  /** A node runs only the databases placed on it: one that moved (a drain, a lost node's reassignment) is another node's now. */
  private async checkPlacedHere(ref: BranchRef): Promise<void> {
    const { rows } = await this.storage.catalog.query<{ node_id: string | null; moving_from: string | null }>(
      'SELECT node_id, moving_from FROM databases WHERE id = $1', [ref.databaseId]);
    const placed = rows[0]?.node_id;
    if (placed && placed !== this.storage.node.id) throw new ComputeStartError(`database "${ref.databaseId}" has moved to node ${placed}; connect again`);
    if (rows[0]?.moving_from) throw new ComputeStartError(`database "${ref.databaseId}" is moving here from node ${rows[0].moving_from}; try again in a moment`);
    if (!this.storage.node.canWrite()) throw new ComputeStartError('this node has lost its place in the fleet (no heartbeat reached the catalog) and starts no compute until it is back');
  }

  /** The node may no longer write: the compute stops at once, uploading nothing more (another node serves its database now). */
  private fenced(branchId: string): void {
    const r = this.running.get(branchId);
    if (!r) return;
    this.opts.log.error({ branch: branchId }, 'this node was fenced: stopping the compute without writing anything more');
    this.running.delete(branchId);
    r.streamer.abort();
    void r.server.stop('immediate').finally(() => {
      this.cgroups.remove(branchId);
      this.events.onComputeExit?.(branchId, 'this node was fenced');
    });
  }

  /** This node was declared dead by the fleet: every compute stops now. */
  fenceAll(): void {
    for (const branchId of [...this.running.keys()]) this.fenced(branchId);
  }

  /**
   * Files of databases that are not placed on this node any more (moved while it was away, or
   * fenced) go: they are stale copies, and the node that holds the database now is their writer.
   */
  async dropMoved(): Promise<number> {
    const { rows } = await this.storage.catalog.query<{ id: string }>('SELECT id FROM databases WHERE node_id = $1 OR node_id IS NULL', [this.storage.node.id]);
    const here = new Set(rows.map((r) => r.id));
    let dropped = 0;
    for (const b of this.localBranches()) {
      if (here.has(b.databaseId) || this.running.has(b.branchId)) continue;
      fs.rmSync(b.branchDir, { recursive: true, force: true });
      dropped++;
    }
    if (dropped) this.opts.log.info({ dropped }, 'dropped the local files of databases placed on other nodes');
    return dropped;
  }

  /** The first start (and any start after a role change) creates what the tenant needs. */
  private async applySpecIfChanged(ref: BranchRef, server: PostgresServer): Promise<boolean> {
    // The extension allowlist is the configuration's, the major the binaries': a change of either re-applies the spec at the next start.
    const spec: TenantSpec = { ...this.storedSpec(ref), extensions: this.opts.compute.extensions, pgVersion: server.opts.install.major };
    const wanted = JSON.stringify(spec);
    const applied = path.join(server.opts.pgdata, APPLIED_FILE);
    if (readText(applied) === wanted) return false;
    await applyTenantSpec(server.opts.socketDir, SOCKET_PORT, spec);
    await server.admitRoles(spec.roles);
    fs.writeFileSync(applied, wanted);
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
    this.running.delete(branchId);
    this.cgroups.remove(branchId);
  }

  /**
   * pgfleet itself enforces suspend timeouts and quotas of local computes; a new size applies at
   * once to the database's running computes (their cgroups), and to the others at their start.
   */
  async updateSettings(ref: BranchRef): Promise<void> {
    for (const [branchId, r] of this.running) {
      if (r.databaseId !== ref.databaseId || !r.server.running) continue;
      this.cgroups.resize(branchId, this.computeUnitsOf(ref));
      if (r.durability !== ref.durability) {
        r.durability = ref.durability;
        await this.setCommitsWait(r, r.durability === 'sync' || r.backlogged);
      }
    }
  }

  /** Whether the compute's commits wait for the store (durability "sync", or its WAL backlogged here), applied with a reload. */
  private async setCommitsWait(r: Running, wait: boolean): Promise<void> {
    writeRuntimeSettings(r.server.opts.pgdata, r.server.opts.user, { commitsWaitForStore: wait });
    r.streamer.setSync(wait);
    await asAdmin(r.server.opts.socketDir, SOCKET_PORT, (c) => c.query('SELECT pg_reload_conf()'));
  }

  /** Looks at every running compute whose WAL the store is not taking (StoreWatch); run every second. */
  async watchStore(): Promise<void> {
    for (const r of this.running.values()) {
      await this.watch.check(r).catch((err) => this.opts.log.warn({ branch: r.branchId, err: String(err) }, 'store watch failed'));
    }
  }

  async syncRoles(ref: BranchRef): Promise<ProviderState> {
    this.writeSpec(ref);
    const r = this.running.get(ref.branchId);
    if (r?.server.running) await this.applySpecIfChanged(ref, r.server);
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

  /** Resolves once the store holds the running compute's WAL up to `lsn`. */
  async stored(ref: BranchRef, lsn: bigint, timeoutMs = 60_000): Promise<void> {
    const r = this.running.get(ref.branchId);
    if (!r) throw new Error(`the compute of ${ref.branchId} is not running`);
    const deadline = Date.now() + timeoutMs;
    while (r.streamer.stored < lsn) {
      if (Date.now() > deadline) {
        throw r.streamer.failing ?? new Error(`the store did not take the WAL up to ${lsn} within ${timeoutMs / 1000} s`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /**
   * Marks where the history ends (a commit, then a WAL switch, stored), then a fast shutdown, whose
   * last WAL (the shutdown checkpoint) the receiver stores before it lets go: the history in the
   * store then ends exactly where these files do. A stop while the store is down still stops; its
   * WAL stays here (kept by the slot) and goes up at the next start.
   */
  async stop(ref: BranchRef): Promise<void> {
    const r = this.running.get(ref.branchId);
    if (!r) return;
    const end = await markHistoryEnd(r.server.opts.socketDir, SOCKET_PORT, (lsn) => this.stored(ref, lsn, STOP_STORE_WAIT_MS)).catch((err) => {
      this.opts.log.warn({ branch: ref.branchId, err: String(err) }, 'could not store the end of the history before a stop');
      return undefined;
    });
    this.running.delete(ref.branchId);
    await r.server.stop('fast');
    this.forget(ref.branchId);
    const done = await Promise.race([r.streamer.finished.then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), STOP_STORE_WAIT_MS).unref())]);
    if (!done || r.streamer.backlog > 0) {
      r.streamer.abort();
      return;
    }
    const dir = this.branchDir(ref);
    const pgdata = path.join(dir, 'pgdata');
    if (BigInt(checkpointPosition(pgdata)) >= r.streamer.stored) return; // the shutdown checkpoint did not reach the store
    await this.storage.histories.advance(r.history.id, r.streamer.stored, true);
    writeCache(dir, { historyId: r.history.id, end: r.streamer.stored, stoppedAt: Date.now() });
    this.storeBytes.delete(ref.databaseId);
    if (end) await this.backupIfDue(r.history, pgdata, end).catch((err) => this.opts.log.warn({ branch: ref.branchId, err: String(err) }, 'base backup after stop failed'));
  }

  /** A cleanly stopped data directory is a consistent snapshot: stored as a base backup when one is due. */
  private async backupIfDue(history: History, pgdata: string, end: HistoryEnd): Promise<void> {
    const newest = (await this.storage.histories.backups([history.id])).at(-1);
    if (newest && Date.now() - newest.endTime.getTime() < this.storage.backupIntervalMs) return;
    await this.storage.backups.copy(history, pgdata, end);
  }

  /** The socket directory of a running compute. */
  socketDirOf(ref: BranchRef): string | undefined {
    const r = this.running.get(ref.branchId);
    return r?.server.running ? r.server.opts.socketDir : undefined;
  }

  /** Marks the end of a running compute's history now: everything committed until then is in the store. */
  async markRunningHistoryEnd(ref: BranchRef): Promise<HistoryEnd> {
    const socketDir = this.socketDirOf(ref);
    if (!socketDir) throw new Error(`the compute of ${ref.branchId} is not running`);
    return markHistoryEnd(socketDir, SOCKET_PORT, (lsn) => this.stored(ref, lsn));
  }

  /** The history the running compute writes. */
  runningHistory(ref: BranchRef): History | undefined {
    return this.running.get(ref.branchId)?.history;
  }

  /**
   * Removes the branch's files here once the store can give them back as they are: the history
   * ended cleanly and a base backup stands at its end (taken now when the newest is older).
   * Returns false when there are none; throws when they must stay (the compute runs, or its
   * history is not all in the store yet).
   */
  evict(ref: BranchPlace): Promise<boolean> {
    return this.withFiles(ref.branchId, () => this.evictHere(ref));
  }

  private async evictHere(ref: BranchPlace): Promise<boolean> {
    const dir = this.branchDir(ref);
    if (!fs.existsSync(path.join(dir, 'pgdata'))) {
      fs.rmSync(dir, { recursive: true, force: true });
      return false;
    }
    if (this.running.has(ref.branchId)) throw new Error(`the compute of ${ref.branchId} runs`);
    const cache = readCache(dir);
    const history = await this.storage.histories.ofBranch(ref.branchId);
    if (!history || !cache || cache.historyId !== history.id || history.writerNode !== null || cache.end !== history.endLsn) {
      throw new Error(`the history of ${ref.branchId} is not all in the store yet`);
    }
    const newest = (await this.storage.histories.backups([history.id])).at(-1);
    const pgdata = path.join(dir, 'pgdata');
    if (!newest || newest.endLsn !== history.endLsn) {
      await this.storage.backups.copy(history, pgdata, { time: history.endTime ?? new Date() });
    }
    fs.rmSync(dir, { recursive: true, force: true });
    this.dropEmptyDatabaseDir(ref);
    this.metrics?.evictions.inc();
    this.opts.log.info({ branch: ref.branchId, database: ref.databaseId }, 'evicted the local files of an idle branch (the store holds them)');
    return true;
  }

  /** A database with no branch files here any more gives its directory and its OS user back. */
  private dropEmptyDatabaseDir(ref: BranchPlace): void {
    const dbDir = this.layout.databaseDir(ref.region, ref.databaseId);
    if (fs.existsSync(dbDir) && fs.readdirSync(dbDir).length === 0) fs.rmdirSync(dbDir);
    if (!fs.existsSync(dbDir)) this.users.release(dbDir);
  }

  /**
   * Evicts the files of branches suspended longer than PGFLEET_LOCAL_EVICT_AFTER, then, while the
   * cache is over PGFLEET_LOCAL_CACHE_BYTES, those of the least recently stopped. Returns how many went.
   */
  async evictIdle(): Promise<number> {
    const { evictAfterMs, cacheBytes } = this.storage.settings;
    const idle = this.localBranches()
      .filter((b) => !this.running.has(b.branchId))
      .map((b) => ({ ...b, stoppedAt: readCache(b.branchDir)?.stoppedAt ?? null }))
      .filter((b): b is typeof b & { stoppedAt: number } => b.stoppedAt !== null)
      .sort((a, b) => a.stoppedAt - b.stoppedAt);
    let evicted = 0;
    const tryEvict = async (b: BranchPlace) => {
      try {
        if (await this.evict(b)) evicted++;
      } catch (err) {
        this.opts.log.debug({ branch: b.branchId, err: String(err) }, 'not evicted');
      }
    };
    for (const b of idle.filter((b) => Date.now() - b.stoppedAt >= evictAfterMs)) await tryEvict(b);
    if (cacheBytes !== undefined) {
      let total = 0;
      for (const b of this.localBranches()) total += await directorySize(b.branchDir);
      for (const b of idle) {
        if (total <= cacheBytes) break;
        const size = await directorySize(b.branchDir);
        if (size === 0) continue;
        await tryEvict(b);
        if (!fs.existsSync(b.branchDir)) total -= size;
      }
    }
    return evicted;
  }

  async delete(ref: BranchRef): Promise<void> {
    const r = this.running.get(ref.branchId);
    this.running.delete(ref.branchId);
    r?.streamer.abort();
    await r?.server.stop('fast');
    this.forget(ref.branchId);
    fs.rmSync(this.branchDir(ref), { recursive: true, force: true });
    fs.rmSync(this.layout.socketDir(ref.branchId), { recursive: true, force: true });
    this.dropEmptyDatabaseDir(ref);
    // The root branch goes last, with its database: everything the database has in the store goes with it.
    if (ref.root) await this.deleteStored(storeKeys.database(ref.databaseId));
    this.storeBytes.delete(ref.databaseId);
  }

  /** Removes every object under a prefix. */
  async deleteStored(prefix: string): Promise<void> {
    const keys: string[] = [];
    for await (const o of this.storage.store.store.list(prefix)) keys.push(o.key);
    await this.storage.store.store.delete(keys);
  }

  status(ref: BranchRef): 'running' | 'stopped' {
    return this.running.get(ref.branchId)?.server.running ? 'running' : 'stopped';
  }

  /** What the store holds for the database (listed at most every 5 minutes, or after a change). */
  async storedBytes(databaseId: string): Promise<number> {
    const known = this.storeBytes.get(databaseId);
    if (known && Date.now() - known.at < 300_000) return known.bytes;
    let bytes = 0;
    for await (const o of this.storage.store.store.list(storeKeys.database(databaseId))) bytes += o.size;
    this.storeBytes.set(databaseId, { bytes, at: Date.now() });
    return bytes;
  }

  /** Storage: the store's bytes of the database, counted on its root branch (branches share its objects). */
  async sample(ref: BranchRef): Promise<UsageSample> {
    const r = this.running.get(ref.branchId);
    const storageBytes = ref.root ? await this.storedBytes(ref.databaseId).catch(() => undefined) : 0;
    const sample: UsageSample = storageBytes === undefined ? {} : { storageBytes };
    if (!r?.server.running) return sample;
    return { ...sample, walBytes: await walPosition(r.server.opts.socketDir, SOCKET_PORT), walBytesAtStart: r.walAtStart };
  }

  /** The running postmaster's pid (tests and diagnostics). */
  pid(branchId: string): number | undefined {
    return this.running.get(branchId)?.server.pid;
  }

  /** Whether the running compute's WAL passed PGFLEET_STORAGE_MAX_BACKLOG on this node (its commits wait for the store). */
  backlogged(branchId: string): boolean {
    return this.running.get(branchId)?.backlogged ?? false;
  }

  /** The metrics' view of the running computes' WAL on its way to the store. */
  storageGauges(): StorageGauges {
    return {
      lagSeconds: () => Math.max(0, ...[...this.running.values()].map((r) => r.streamer.lagMs)) / 1000,
      backlogged: () => [...this.running.values()].filter((r) => r.backlogged).length,
    };
  }

  /** How far the store holds the running compute's WAL (benches, tests). */
  storedPosition(branchId: string): bigint | undefined {
    return this.running.get(branchId)?.streamer.stored;
  }

  /** WAL received from the running compute and not yet in the store, in bytes (metrics, tests). */
  backlog(branchId: string): number | undefined {
    return this.running.get(branchId)?.streamer.backlog;
  }

  async shutdown(): Promise<void> {
    const all = [...this.running.entries()];
    await Promise.all(all.map(async ([branchId, r]) => {
      this.running.delete(branchId);
      await r.server.stop('fast');
      await Promise.race([r.streamer.finished, new Promise((res) => setTimeout(res, STOP_STORE_WAIT_MS).unref())]);
      if (r.streamer.backlog === 0) await this.storage.histories.advance(r.history.id, r.streamer.stored, false).catch(() => {});
      this.forget(branchId);
    }));
  }
}
