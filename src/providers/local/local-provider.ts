import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { branchRefOf, routeByBranch } from '../../catalog/routes.ts';
import type { ComputeSettings } from '../../config.ts';
import { ComputeStartError, ConfigError } from '../../errors.ts';
import { ComputeCgroups } from '../../limits/cgroups.ts';
import type { PgInstall, PgInstalls } from '../../pg/install.ts';
import { type OsUser, chownTree, currentUser, firstBlockedDir, giveTree } from '../../pg/os-user.ts';
import { OsUserPool } from '../../pg/os-user-pool.ts';
import { PostgresServer, SOCKET_PORT } from '../../pg/server.ts';
import type { Branching, BranchRef, ComputeAddress, MeteredUsage, Provider, ProviderEvents, ProviderState, UsageSample } from '../provider.ts';
import { writeCache } from './branch-cache.ts';
import { type HistoryEnd, checkpointPosition, markHistoryEnd, walPosition } from './compute-admin.ts';
import type { CuRange } from '../../autoscaling.ts';
import { Autoscaler, type SizeChange } from './autoscaler.ts';
import { computeSettings, sizedSettings, writeRuntimeSettings } from './compute-settings.ts';
import type { History } from './histories.ts';
import { LocalLayout } from './layout.ts';
import { checkPlacedHere } from './placement-check.ts';
import { StoreBytes } from './store-bytes.ts';
import { type BranchPlace, LocalFiles, SPEC_FILE } from './local-files.ts';
import { rehydrate } from './rehydrate.ts';
import { applyTenantSpecIfChanged } from './tenant-setup.ts';
import type { LocalStorage } from './local-storage.ts';
import { WalArchive } from './wal-archive.ts';
import { streamHistory } from './history-stream.ts';
import type { WalStreamer } from './wal-streamer.ts';
import type { StorageMetrics } from './storage-metrics.ts';
import { type Running, RunningComputes } from './running-computes.ts';

/** How long a stop waits for the store to take the compute's last WAL before it stops anyway (the WAL stays here). */
const STOP_STORE_WAIT_MS = 10_000;

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

/**
 * Computes as Postgres processes on this host: one cluster per branch, listening on a private
 * socket. The store is the home of each branch's data and history: its WAL streams there while
 * the compute runs, its base backups go there, and the files on this node are a cache of it,
 * brought back from the store when they are missing or stale.
 */
export class LocalProvider implements Provider {
  readonly name = 'local';
  readonly rootDeletesAll = false;
  readonly createsAtFirstStart = true;
  readonly layout: LocalLayout;
  /** The branches' files on this node (a cache of the store). */
  readonly files: LocalFiles;
  /** The computes running on this node. */
  readonly running: RunningComputes;
  readonly cgroups: ComputeCgroups;
  /** Moves each running compute's size within its range (with cgroups; without, computes keep their floor). */
  readonly scaler: Autoscaler;
  branching: Branching | undefined;
  /** Only this OS user (the gateway's) may connect to a compute's socket. */
  private readonly gatewayUser = currentUser().name;
  private readonly storage: LocalStorage;
  /** Counted once the gateway's metrics exist. */
  metrics: StorageMetrics | undefined;
  /** Told of every size a compute takes (its start, each scaling, its stop), once the gateway listens. */
  onSizeChange: ((change: SizeChange) => void) | undefined;
  /** What each database holds in the store (storage_bytes). */
  readonly storeBytes: StoreBytes;
  /** Each database's migration key (src/migrations/migration-keys.ts), set by the gateway. */
  migrationKeys: ((databaseId: string) => string) | undefined;

  constructor(readonly opts: LocalProviderOptions, private readonly events: ProviderEvents = {}) {
    this.layout = new LocalLayout(opts.dataDir, opts.runDir);
    this.files = new LocalFiles(this.layout, opts.users ?? new OsUserPool(), opts.storage, (branchId) => this.running.has(branchId), opts.log);
    this.files.onEvicted = () => this.metrics?.evictions.inc();
    this.cgroups = opts.cgroups ?? new ComputeCgroups({ kind: 'none', why: 'not configured' });
    this.scaler = new Autoscaler({ cgroups: this.cgroups, quietMs: opts.compute.scaleDownAfterMs, log: opts.log, onChange: (c) => this.onSizeChange?.(c) });
    this.running = new RunningComputes({ settings: opts.storage.settings, cgroups: this.cgroups, scaler: this.scaler, events, log: opts.log });
    this.storage = opts.storage;
    this.storeBytes = new StoreBytes(opts.storage.store);
    const blocked = firstBlockedDir(opts.dataDir, opts.user);
    if (blocked) {
      throw new ConfigError('PGFLEET_DATA_DIR', `the compute user "${opts.user.name}" cannot enter ${blocked}; pick a data dir it can reach, or run chmod o+x ${blocked}`);
    }
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

  /** The branch's directory on this node: pgdata, its cache state, its spec and log. */
  dataDirOf(ref: BranchPlace): string {
    return this.files.branchDir(ref);
  }

  /** Nothing is made until the first start: a database that never runs costs nothing, here or in the store. */
  async create(): Promise<ProviderState> {
    return {};
  }

  /** Postgres settings of a branch's compute (those that need a restart from its ceiling). */
  settings(ref: BranchRef): Record<string, string | number> {
    return computeSettings(ref, this.opts.compute, this.rangeOf(ref).maxCu);
  }

  /** The database's range, else the gateway's PGFLEET_AUTOSCALING. */
  rangeOf(ref: BranchRef): CuRange {
    return ref.autoscaling ?? this.opts.compute.autoscaling;
  }

  /** The size the branch's compute holds now; undefined when it does not run here. */
  sizeOf(ref: BranchRef): number | undefined {
    return this.running.get(ref.branchId)?.server.running ? this.scaler.sizeOf(ref.branchId) ?? this.rangeOf(ref).minCu : undefined;
  }

  async currentUnits(ref: BranchRef): Promise<number> {
    return this.sizeOf(ref) ?? 0;
  }

  archiveOf(databaseId: string): WalArchive {
    return new WalArchive(this.storage.store, databaseId);
  }

  start(ref: BranchRef): Promise<ComputeAddress> {
    return this.files.withFiles(ref.branchId, () => this.startHere(ref));
  }

  private async startHere(ref: BranchRef): Promise<ComputeAddress> {
    const running = this.running.get(ref.branchId);
    if (running?.server.running) return { kind: 'unix', socketPath: running.server.socketPath() };
    const install = this.installFor(ref);
    await checkPlacedHere(this.storage, ref);
    const user = this.files.userOf(ref);
    const dir = this.files.branchDir(ref);
    // The spec the last role change wrote wins; on a node that never held the branch, the catalog's (this ref's).
    if (!fs.existsSync(path.join(dir, SPEC_FILE))) this.files.writeSpec(ref);
    // The database's files become its user's: at its first start, and data an earlier pgfleet wrote as one shared user.
    giveTree(this.layout.databaseDir(ref.region, ref.databaseId), user);
    if (ref.copyOf && !(await this.storage.histories.ofBranch(ref.branchId))) await this.copyInto(ref, ref.copyOf);
    const socketDir = this.layout.socketDir(ref.branchId);
    let history: History;
    try {
      const brought = await rehydrate({ ...this.storage, catalog: this.storage.catalog, nodeId: this.storage.node.id, ...this.storage.templates.sources },
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
    const dataMajor = this.files.dataPgVersion(ref);
    if (dataMajor !== ref.pgVersion) {
      throw new ComputeStartError(`the data of database "${ref.databaseId}" is of Postgres ${dataMajor}, but the catalog says ${ref.pgVersion}`);
    }
    const range = this.rangeOf(ref);
    const sized = sizedSettings(range.minCu, this.opts.compute);
    writeRuntimeSettings(pgdata, user, { commitsWaitForStore: ref.durability === 'sync', sized });
    const walAtStart = checkpointPosition(pgdata);
    await this.cgroups.drain(ref.branchId);
    const server = new PostgresServer({
      install, user, peerOnly: this.gatewayUser, pgdata, peerRoles: this.files.storedSpec(ref).roles, socketDir,
      logFile: path.join(dir, 'postgres.log'), settings: this.settings(ref), startTimeoutMs: this.opts.startTimeoutMs,
    });
    await server.start();
    let streamer: WalStreamer | undefined;
    try {
      this.cgroups.place(ref.branchId, server.pid!, { cu: range.minCu, floorCu: range.minCu, ceilingCu: range.maxCu });
      streamer = await streamHistory({
        storage: this.storage, history, socketDir, pgdata, sync: ref.durability === 'sync', log: this.opts.log.child({ branch: ref.branchId }),
        onUploadFailed: (err) => {
          this.metrics?.uploadFailures.inc();
          this.opts.log.warn({ branch: ref.branchId, err: String(err) }, 'WAL upload to the store failed; retrying');
        },
        onFenced: () => this.running.fence(ref.branchId),
        onStored: () => this.storeBytes.growing(ref.databaseId),
      });
      writeCache(dir, { historyId: history.id, end: null, stoppedAt: null });
      const entry: Running = {
        server, streamer, history, databaseId: ref.databaseId, walAtStart, durability: ref.durability, branchId: ref.branchId, socketDir, backlogged: false,
        commitsWait: ref.durability === 'sync', sized,
      };
      this.running.add(entry);
      // Without cgroups nothing is measured: the compute keeps its floor's settings.
      if (this.cgroups.enabled) this.scaler.follow({ branchId: ref.branchId, databaseId: ref.databaseId, apply: (cu, r) => this.applySize(entry, cu, r) }, range);
      server.on('exit', (code, signal) => {
        this.running.forget(ref.branchId);
        this.opts.log.warn({ branch: ref.branchId, code, signal }, 'compute exited unexpectedly');
        this.events.onComputeExit?.(ref.branchId, `exit code ${code}, signal ${signal}`);
      });
      // WAL of pgfleet's own setup (the tenant's database and roles) is not the tenant's.
      if (await this.applySpecIfChanged(ref, server)) entry.walAtStart = await walPosition(socketDir, SOCKET_PORT);
    } catch (err) {
      this.running.take(ref.branchId);
      streamer?.abort();
      await server.stop();
      this.running.forget(ref.branchId);
      throw err;
    }
    return { kind: 'unix', socketPath: server.socketPath() };
  }

  /**
   * The first start of a database made as a copy of another branch (a partner template): that
   * branch's data as it is now, in a history forked from its own, made as a branch of it is.
   */
  private async copyInto(ref: BranchRef, sourceBranchId: string): Promise<void> {
    const source = await routeByBranch(this.storage.catalog, sourceBranchId);
    if (!source || !this.branching) throw new ComputeStartError(`database "${ref.databaseId}" is a copy of branch "${sourceBranchId}", which is gone`);
    const started = Date.now();
    await this.branching.branch(branchRefOf(source), ref, undefined, this.running.get(sourceBranchId)?.server.running ?? false);
    // Another database's files: its OS user's until now.
    chownTree(this.files.branchDir(ref), this.files.userOf(ref));
    this.opts.log.info({ branch: ref.branchId, source: sourceBranchId, ms: Date.now() - started }, 'database data copied from its template');
  }

  /** The first start (and any start after a role change) creates what the tenant needs. */
  private applySpecIfChanged(ref: BranchRef, server: PostgresServer): Promise<boolean> {
    // The extension allowlist is the configuration's, the major the binaries': a change of either re-applies the spec at the next start.
    return applyTenantSpecIfChanged(server, {
      ...this.files.storedSpec(ref), extensions: this.opts.compute.extensions, pgVersion: server.opts.install.major,
      ...(this.migrationKeys ? { migrationKey: this.migrationKeys(ref.databaseId) } : {}),
    });
  }

  /** A size applied to a running compute: its cgroup, then its sized settings with a reload (SIGHUP). */
  private async applySize(r: Running, cu: number, range: CuRange): Promise<void> {
    this.cgroups.resize(r.branchId, { cu, floorCu: range.minCu, ceilingCu: range.maxCu });
    r.sized = sizedSettings(cu, this.opts.compute);
    writeRuntimeSettings(r.server.opts.pgdata, r.server.opts.user, { commitsWaitForStore: r.commitsWait, sized: r.sized });
    if (r.server.pid) process.kill(r.server.pid, 'SIGHUP');
  }

  /**
   * pgfleet itself enforces suspend timeouts and quotas of local computes; a new range applies at
   * once to the database's running computes (their size moves into it), and to the others at their start.
   */
  async updateSettings(ref: BranchRef): Promise<void> {
    for (const r of this.running.all()) {
      if (r.databaseId !== ref.databaseId || !r.server.running) continue;
      await this.scaler.setRange(r.branchId, this.rangeOf(ref));
      if (r.durability !== ref.durability) {
        r.durability = ref.durability;
        await this.running.setCommitsWait(r, r.durability === 'sync' || r.backlogged);
      }
    }
  }

  async syncRoles(ref: BranchRef): Promise<ProviderState> {
    this.files.writeSpec(ref);
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
    this.running.take(ref.branchId);
    await r.server.stop('fast');
    this.running.forget(ref.branchId);
    const done = await Promise.race([r.streamer.finished.then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), STOP_STORE_WAIT_MS).unref())]);
    if (!done || r.streamer.backlog > 0) {
      r.streamer.abort();
      return;
    }
    const dir = this.files.branchDir(ref);
    const pgdata = path.join(dir, 'pgdata');
    if (BigInt(checkpointPosition(pgdata)) >= r.streamer.stored) return; // the shutdown checkpoint did not reach the store
    await this.storage.histories.advance(r.history.id, r.streamer.stored, true);
    writeCache(dir, { historyId: r.history.id, end: r.streamer.stored, stoppedAt: Date.now() });
    if (end) await this.backupIfDue(r.history, pgdata, { time: end.time, lsn: r.streamer.stored }).catch((err) => this.opts.log.warn({ branch: ref.branchId, err: String(err) }, 'base backup after stop failed'));
    this.storeBytes.changed(ref.databaseId);
  }

  /**
   * A cleanly stopped data directory is a consistent snapshot: stored as a base backup when one is
   * due (the history has none of its own yet, only its template, or its newest is older than the interval).
   */
  private async backupIfDue(history: History, pgdata: string, end: { time: Date; lsn: bigint }): Promise<void> {
    const newest = (await this.storage.histories.backups([history.id])).at(-1);
    if (newest && newest.kind !== 'template' && Date.now() - newest.endTime.getTime() < this.storage.backupIntervalMs) return;
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

  async delete(ref: BranchRef): Promise<void> {
    const r = this.running.get(ref.branchId);
    this.running.take(ref.branchId);
    r?.streamer.abort();
    await r?.server.stop('fast');
    this.running.forget(ref.branchId);
    this.files.remove(ref);
    // The root branch goes last, with its database: everything the database has in the store goes with it.
    if (ref.root) await this.storeBytes.deleteDatabase(ref.databaseId);
  }

  status(ref: BranchRef): 'running' | 'stopped' {
    return this.running.get(ref.branchId)?.server.running ? 'running' : 'stopped';
  }

  /** Storage: the store's bytes of the database, counted on its root branch (branches share its objects). */
  async sample(ref: BranchRef): Promise<UsageSample> {
    const r = this.running.get(ref.branchId);
    const storageBytes = ref.root ? await this.storeBytes.of(ref.databaseId).catch(() => undefined) : 0;
    const sample: UsageSample = storageBytes === undefined ? {} : { storageBytes };
    if (!r?.server.running) return sample;
    return { ...sample, walBytes: await walPosition(r.server.opts.socketDir, SOCKET_PORT), walBytesAtStart: r.walAtStart };
  }

  async shutdown(): Promise<void> {
    const all = this.running.all().map((r) => [r.branchId, r] as const);
    await Promise.all(all.map(async ([branchId, r]) => {
      this.running.take(branchId);
      await r.server.stop('fast');
      await Promise.race([r.streamer.finished, new Promise((res) => setTimeout(res, STOP_STORE_WAIT_MS).unref())]);
      if (r.streamer.backlog === 0) await this.storage.histories.advance(r.history.id, r.streamer.stored, false).catch(() => {});
      this.running.forget(branchId);
    }));
  }
}
