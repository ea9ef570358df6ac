import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { type OsUser, currentUser, makeOwnedDir } from '../../pg/os-user.ts';
import type { OsUserPool } from '../../pg/os-user-pool.ts';
import { clearPreviousRun } from '../../pg/server.ts';
import type { BranchRef } from '../provider.ts';
import { readCache } from './branch-cache.ts';
import { directorySize } from './directory-size.ts';
import type { LocalLayout } from './layout.ts';
import type { LocalStorage } from './local-storage.ts';
import type { TenantSpec } from './tenant-setup.ts';

/** Where a branch's files are on this node. */
export type BranchPlace = Pick<BranchRef, 'region' | 'databaseId' | 'branchId'>;

export const SPEC_FILE = 'tenant.json';

export type StoredSpec = Omit<TenantSpec, 'extensions' | 'pgVersion'>;

export const specOf = (ref: BranchRef): StoredSpec => ({ databaseName: ref.databaseName, ownerRole: ref.ownerRole, roles: [...new Set(ref.roles)].sort() });

/**
 * The branches' files on this node, a cache of the store: where they are and whose they are, and
 * their eviction once the store holds them whole. A start, an eviction and a copy of one branch's
 * files never overlap (withFiles).
 */
export class LocalFiles {
  /** The file work under way per branch. */
  private readonly busy = new Map<string, Promise<unknown>>();
  /** Counted by the gateway's metrics. */
  onEvicted: (() => void) | undefined;

  constructor(
    readonly layout: LocalLayout,
    private readonly users: OsUserPool,
    private readonly storage: LocalStorage,
    /** Whether the branch's compute runs (its files then stay). */
    private readonly runs: (branchId: string) => boolean,
    private readonly log: Logger,
  ) {}

  branchDir(ref: BranchPlace): string {
    return this.layout.branchDir(ref.region, ref.databaseId, ref.branchId);
  }

  /** The OS user of this database's computes; it alone can enter the database's directory and sockets. */
  userOf(ref: BranchPlace): OsUser {
    return this.users.userFor(this.layout.databaseDir(ref.region, ref.databaseId));
  }

  /** The major of a branch's data here (its PG_VERSION); undefined when it is not here. */
  dataPgVersion(ref: BranchPlace): number | undefined {
    try {
      return Number(fs.readFileSync(path.join(this.branchDir(ref), 'pgdata', 'PG_VERSION'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  /** Every branch with files on this node. */
  branches(): (BranchPlace & { branchDir: string })[] {
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

  /** The tenant spec written for the branch (writeSpec), else the ref's. */
  storedSpec(ref: BranchRef): StoredSpec {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.branchDir(ref), SPEC_FILE), 'utf8'));
    } catch {
      return specOf(ref);
    }
  }

  /** Runs fn alone for the branch's files here. */
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

  /** Stops computes that a previous pgfleet run left behind. Returns how many there were. */
  async clearOrphans(): Promise<number> {
    let stopped = 0;
    for (const { branchDir, branchId } of this.branches()) {
      const pgdata = path.join(branchDir, 'pgdata');
      if (!fs.existsSync(path.join(pgdata, 'postmaster.pid'))) continue;
      if (await clearPreviousRun(pgdata, this.layout.socketDir(branchId))) stopped++;
    }
    if (stopped) this.log.info({ stopped }, 'stopped computes left by a previous run');
    return stopped;
  }

  /** Removes a branch's files here (its compute stopped), and its database's directory once empty. */
  remove(ref: BranchPlace): void {
    fs.rmSync(this.branchDir(ref), { recursive: true, force: true });
    fs.rmSync(this.layout.socketDir(ref.branchId), { recursive: true, force: true });
    this.dropEmptyDatabaseDir(ref);
  }

  /** A database with no branch files here any more gives its directory and its OS user back. */
  private dropEmptyDatabaseDir(ref: BranchPlace): void {
    const dbDir = this.layout.databaseDir(ref.region, ref.databaseId);
    if (fs.existsSync(dbDir) && fs.readdirSync(dbDir).length === 0) fs.rmdirSync(dbDir);
    if (!fs.existsSync(dbDir)) this.users.release(dbDir);
  }

  /**
   * Removes the branch's files here once the store can give them back as they are: the history
   * ended cleanly and a base backup stands at its end (taken now when the newest is older).
   * Returns false when there are none; throws when they must stay (the compute runs, or its
   * history is not all in the store yet).
   */
  evict(ref: BranchPlace): Promise<boolean> {
    return this.withFiles(ref.branchId, async () => {
      const dir = this.branchDir(ref);
      if (!fs.existsSync(path.join(dir, 'pgdata'))) {
        this.remove(ref);
        return false;
      }
      if (this.runs(ref.branchId)) throw new Error(`the compute of ${ref.branchId} runs`);
      const cache = readCache(dir);
      const history = await this.storage.histories.ofBranch(ref.branchId);
      if (!history || !cache || cache.historyId !== history.id || history.writerNode !== null || cache.end !== history.endLsn) {
        throw new Error(`the history of ${ref.branchId} is not all in the store yet`);
      }
      const newest = (await this.storage.histories.backups([history.id])).at(-1);
      if (!newest || newest.endLsn !== history.endLsn) {
        await this.storage.backups.copy(history, path.join(dir, 'pgdata'), { time: history.endTime ?? new Date(), lsn: history.endLsn });
      }
      this.remove(ref);
      this.onEvicted?.();
      this.log.info({ branch: ref.branchId, database: ref.databaseId }, 'evicted the local files of an idle branch (the store holds them)');
      return true;
    });
  }

  /**
   * Evicts the files of branches suspended longer than PGFLEET_LOCAL_EVICT_AFTER, then, while the
   * cache is over PGFLEET_LOCAL_CACHE_BYTES, those of the least recently stopped. Returns how many went.
   */
  async evictIdle(): Promise<number> {
    const { evictAfterMs, cacheBytes } = this.storage.settings;
    const idle = this.branches()
      .filter((b) => !this.runs(b.branchId))
      .map((b) => ({ ...b, stoppedAt: readCache(b.branchDir)?.stoppedAt ?? null }))
      .filter((b): b is typeof b & { stoppedAt: number } => b.stoppedAt !== null)
      .sort((a, b) => a.stoppedAt - b.stoppedAt);
    let evicted = 0;
    const tryEvict = async (b: BranchPlace) => {
      try {
        if (await this.evict(b)) evicted++;
      } catch (err) {
        this.log.debug({ branch: b.branchId, err: String(err) }, 'not evicted');
      }
    };
    for (const b of idle.filter((b) => Date.now() - b.stoppedAt >= evictAfterMs)) await tryEvict(b);
    if (cacheBytes !== undefined) {
      let total = 0;
      for (const b of this.branches()) total += await directorySize(b.branchDir);
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

  /**
   * Files of databases that are not placed on this node any more (moved while it was away, or
   * fenced) go: they are stale copies, and the node that holds the database now is their writer.
   */
  async dropMoved(): Promise<number> {
    const { rows } = await this.storage.catalog.query<{ id: string }>('SELECT id FROM databases WHERE node_id = $1 OR node_id IS NULL', [this.storage.node.id]);
    const here = new Set(rows.map((r) => r.id));
    let dropped = 0;
    for (const b of this.branches()) {
      if (here.has(b.databaseId) || this.runs(b.branchId)) continue;
      this.remove(b);
      dropped++;
    }
    if (dropped) this.log.info({ dropped }, 'dropped the local files of databases placed on other nodes');
    return dropped;
  }
}
