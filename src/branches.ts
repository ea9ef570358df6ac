import type { Logger } from 'pino';
import type { Catalog } from './catalog/catalog.ts';
import type { RouteCache } from './catalog/route-cache.ts';
import { type BranchRoute, branchRefOf, routeByBranch, routesOfDatabase } from './catalog/routes.ts';
import type { ComputeManager } from './computes.ts';
import type { ComputeTarget } from './compute-target.ts';
import type { Databases } from './databases.ts';
import type { DatabaseRecord } from './database-records.ts';
import type { Owners } from './nodes/owners.ts';
import { BadRequestError, BranchRewoundError, ConflictError, NotFoundError } from './errors.ts';
import { generateName } from './names.ts';
import type { BranchCall, NewBranch } from './branch-calls.ts';
import type { Branching } from './providers/provider.ts';
import type { Regions } from './regions.ts';
import { type PointInTime, describePoint, parsePointInTime } from './providers/point-in-time.ts';
import { parseLsn } from './providers/point-in-time.ts';

/** A branch as the doors show it. */
export interface BranchRecord {
  id: string;
  databaseId: string;
  name: string;
  /** The parent's name; null for the database's root branch (`main`). */
  parent: string | null;
  parentTime: Date | null;
  parentLsn: string | null;
  endpointId: string;
  databaseName: string;
  ownerRole: string;
  createdAt: Date;
}

/** A branch record as it crossed the node link (JSON: dates as text). */
const revive = (b: BranchRecord): BranchRecord => ({
  ...b, createdAt: new Date(b.createdAt), parentTime: b.parentTime === null ? null : new Date(b.parentTime),
});

const BRANCH_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** A clock a little ahead of ours is not "the future". */
const FUTURE_SKEW_MS = 1000;

const SELECT_BRANCH = `
  SELECT b.id, b.database_id, b.name, b.parent_time, b.parent_lsn::text, b.created_at, p.name AS parent, e.id AS endpoint_id,
         d.database_name, d.owner_role
    FROM branches b
    JOIN databases d ON d.id = b.database_id
    JOIN endpoints e ON e.branch_id = b.id
    LEFT JOIN branches p ON p.id = b.parent_id`;

const toRecord = (r: any): BranchRecord => ({
  id: r.id, databaseId: r.database_id, name: r.name, parent: r.parent, parentTime: r.parent_time, parentLsn: r.parent_lsn,
  endpointId: r.endpoint_id, databaseName: r.database_name, ownerRole: r.owner_role, createdAt: r.created_at,
});

const isUniqueViolation = (err: unknown) => (err as { code?: string }).code === '23505';

/** `main_before_20251123T201500123Z`: when the restore happened, to the millisecond. */
const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('.', '');

/**
 * Branches of a database and point-in-time restore, over any provider that can branch.
 * Roles belong to the database: every branch has the same roles and passwords.
 */
export class Branches {
  constructor(
    private readonly catalog: Catalog,
    /** Told of every committed change to a database's branches. */
    private readonly routes: RouteCache,
    private readonly regions: Regions,
    private readonly databases: Databases,
    private readonly computes: ComputeManager,
    private readonly owners: Owners,
    /** Several gateways share the catalog: a shared provider's branch in the making may be another gateway's. */
    private readonly fleet: boolean,
    private readonly targetFor: (route: BranchRoute) => ComputeTarget,
    private readonly log: Logger,
    /** pgfleet's default history retention (PGFLEET_HISTORY_RETENTION). */
    private readonly defaultRetentionSeconds: number,
    /**
     * A branch of a shared provider (Neon) left 'creating' this long is taken as abandoned by its
     * gateway (killed mid-way); younger ones may be another gateway's work in progress.
     */
    private readonly abandonedCreateMs: number,
  ) {}

  /** Branches this process is making now ('creating' rows that are not abandoned). */
  private readonly making = new Set<string>();

  /** Runs a call where the database's data is: here, or on the node it is placed on (its answer revived from the link's JSON). */
  private owned(db: DatabaseRecord, call: BranchCall): Promise<unknown> {
    return this.owners.of(db.nodeId).branchCall(call, (c) => this.call(c));
  }

  /** Runs a call here: the node link's door for calls forwarded by another node. */
  async call(c: BranchCall): Promise<unknown> {
    switch (c.action) {
      case 'create': return this.runCreate(await this.databases.get(c.partnerId, c.databaseId), c.input);
      case 'delete': return this.runDelete(await this.databases.get(c.partnerId, c.databaseId), c.name);
      case 'reset': return this.runReset(await this.databases.get(c.partnerId, c.databaseId), c.name);
      case 'restore': return this.runRestore(await this.databases.get(c.partnerId, c.databaseId), c.input);
    }
  }

  private branchingOf(db: DatabaseRecord): Branching {
    const branching = this.regions.get(db.region).provider.branching;
    if (!branching) throw new BadRequestError(`region "${db.region}" cannot branch`);
    return branching;
  }

  async list(partnerId: string, databaseId: string): Promise<BranchRecord[]> {
    await this.databases.get(partnerId, databaseId);
    const { rows } = await this.catalog.query(`${SELECT_BRANCH} WHERE b.database_id = $1 AND b.state = 'ready' ORDER BY b.created_at, b.id`, [databaseId]);
    return rows.map(toRecord);
  }

  /** A ready branch by name; the root branch when name is undefined. */
  async get(partnerId: string, databaseId: string, name?: string): Promise<BranchRecord> {
    await this.databases.get(partnerId, databaseId);
    return this.byName(databaseId, name);
  }

  private async byName(databaseId: string, name?: string): Promise<BranchRecord> {
    const where = name === undefined ? 'b.parent_id IS NULL' : 'b.name = $2';
    const { rows } = await this.catalog.query(`${SELECT_BRANCH} WHERE b.database_id = $1 AND b.state = 'ready' AND ${where}`,
      name === undefined ? [databaseId] : [databaseId, name]);
    if (!rows[0]) throw new NotFoundError(`branch "${name ?? 'main'}" not found`);
    return toRecord(rows[0]);
  }

  private async route(branchId: string): Promise<BranchRoute> {
    const route = await routeByBranch(this.catalog, branchId);
    if (!route) throw new NotFoundError(`branch "${branchId}" not found`);
    return route;
  }

  /** The database's history retention: its own, else its partner's default, else pgfleet's. */
  async retentionSeconds(databaseId: string): Promise<number> {
    const { rows } = await this.catalog.query<{ seconds: number }>(
      `SELECT COALESCE(d.history_retention_seconds, p.default_history_retention_seconds, $2)::int AS seconds
         FROM databases d JOIN partners p ON p.id = d.partner_id WHERE d.id = $1`, [databaseId, this.defaultRetentionSeconds]);
    return rows[0]?.seconds ?? this.defaultRetentionSeconds;
  }

  /** The earliest time `at` may name for a branch (null: no history kept, only "now"). */
  async earliestRestorable(db: DatabaseRecord, branch: BranchRecord): Promise<Date | undefined> {
    return this.branchingOf(db).earliest(branchRefOf(await this.route(branch.id)), await this.retentionSeconds(db.id));
  }

  /** Parses `at` and checks it against the branch's history: a 400 says which way it is wrong and the earliest restorable time. */
  private async validateAt(db: DatabaseRecord, branch: BranchRecord, at: string): Promise<PointInTime> {
    const point = parsePointInTime(at);
    const earliest = await this.earliestRestorable(db, branch);
    const window = earliest ? `the earliest restorable time is ${earliest.toISOString()}` : 'this database keeps no history (history_retention_seconds is 0)';
    if ('time' in point) {
      if (point.time.getTime() > Date.now() + FUTURE_SKEW_MS) throw new BadRequestError(`at: ${at} is in the future; ${window}`);
      if (point.time < db.createdAt) throw new BadRequestError(`at: ${at} is before the database existed (${db.createdAt.toISOString()}); ${window}`);
      if (!earliest || point.time < earliest) throw new BadRequestError(`at: ${at} is outside the history retention window; ${window}`);
    } else {
      if (!earliest) throw new BadRequestError(`at: ${at} is outside the history retention window; ${window}`);
      if (parseLsn(point.lsn) < parseLsn(await this.earliestLsn(branch.id))) {
        throw new BadRequestError(`at: LSN ${point.lsn} is before the oldest history kept; ${window}`);
      }
    }
    return point;
  }

  private async earliestLsn(branchId: string): Promise<string> {
    const { rows } = await this.catalog.query<{ lsn: string | null }>('SELECT min(end_lsn)::text AS lsn FROM base_backups WHERE branch_id = $1', [branchId]);
    return rows[0]?.lsn ?? '0/0';
  }

  /** Inserts a branch that nothing routes to yet ('creating'), with its endpoint and compute rows. */
  private async insertCreating(databaseId: string, name: string, parentId: string, at: PointInTime | undefined): Promise<string> {
    validateBranchName(name);
    for (let attempt = 0; ; attempt++) {
      const ids = { branch: generateName('br'), endpoint: generateName('ep') };
      // Known as in the making before the row exists: upkeep never takes it for abandoned.
      this.making.add(ids.branch);
      try {
        await this.catalog.tx(async (tx) => {
          await tx.query(
            `INSERT INTO branches (id, database_id, name, parent_id, state, parent_time, parent_lsn) VALUES ($1, $2, $3, $4, 'creating', $5, $6)`,
            [ids.branch, databaseId, name, parentId, at && 'time' in at ? at.time : at ? null : new Date(), at && 'lsn' in at ? at.lsn : null]);
          await tx.query('INSERT INTO endpoints (id, branch_id) VALUES ($1, $2)', [ids.endpoint, ids.branch]);
          await tx.query(`INSERT INTO computes (branch_id, state) VALUES ($1, 'suspended')`, [ids.branch]);
        });
        return ids.branch;
      } catch (err) {
        this.making.delete(ids.branch);
        if (!isUniqueViolation(err)) throw err;
        const taken = await this.catalog.query('SELECT 1 FROM branches WHERE database_id = $1 AND name = $2', [databaseId, name]);
        if (taken.rowCount) throw new ConflictError(`branch "${name}" already exists`);
        if (attempt >= 4) throw err;
      }
    }
  }

  /** Removes a branch's rows, compute and files (a failed or interrupted creation, or a delete). */
  private async discard(db: DatabaseRecord, route: BranchRoute): Promise<void> {
    await this.catalog.query('UPDATE branches SET parent_id = (SELECT parent_id FROM branches WHERE id = $1) WHERE parent_id = $1', [route.branchId]);
    await this.catalog.query('DELETE FROM branches WHERE id = $1', [route.branchId]);
    await this.routes.changed(db.id);
    await this.computes.remove(route.branchId);
    await this.regions.get(db.region).provider.delete(branchRefOf(route));
  }

  /** A new branch of `parent` (default: the root), as it is now or as it was at `at`. */
  async create(partnerId: string, databaseId: string, input: NewBranch): Promise<BranchRecord> {
    const db = await this.databases.get(partnerId, databaseId);
    return revive(await this.owned(db, { action: 'create', partnerId, databaseId, input }) as BranchRecord);
  }

  private async runCreate(db: DatabaseRecord, input: NewBranch): Promise<BranchRecord> {
    const databaseId = db.id;
    const branching = this.branchingOf(db);
    const parent = await this.byName(databaseId, input.parent);
    const at = input.at === undefined ? undefined : await this.validateAt(db, parent, input.at);
    const id = await this.insertCreating(databaseId, input.name, parent.id, at);
    const route = await this.route(id);
    try {
      const parentRoute = await this.route(parent.id);
      const kept = await this.computes.guard(this.targetFor(parentRoute), (running) => branching.branch(branchRefOf(parentRoute), branchRefOf(route), at, running));
      await this.catalog.query(`UPDATE branches SET state = 'ready', provider_state = $2 WHERE id = $1`, [id, kept]);
    } catch (err) {
      await this.discard(db, route).catch((e) => this.log.error({ err: String(e), branch: id }, 'could not remove a failed branch'));
      throw err;
    } finally {
      this.making.delete(id);
    }
    return this.byName(databaseId, input.name);
  }

  async rename(partnerId: string, databaseId: string, name: string, newName: string): Promise<BranchRecord> {
    const branch = await this.get(partnerId, databaseId, name);
    validateBranchName(newName);
    try {
      await this.catalog.query('UPDATE branches SET name = $2 WHERE id = $1', [branch.id, newName]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`branch "${newName}" already exists`);
      throw err;
    }
    await this.routes.changed(databaseId);
    return this.byName(databaseId, newName);
  }

  /**
   * Deletes a branch with its compute and data. The root branch goes only with its database. A
   * branch's children stay: they hold the history they descend from, and move up to its parent.
   */
  async delete(partnerId: string, databaseId: string, name: string): Promise<void> {
    const db = await this.databases.get(partnerId, databaseId);
    await this.owned(db, { action: 'delete', partnerId, databaseId, name });
  }

  private async runDelete(db: DatabaseRecord, name: string): Promise<void> {
    const databaseId = db.id;
    const branch = await this.byName(databaseId, name);
    if (branch.parent === null) throw new ConflictError(`branch "${name}" is the database's root branch: delete the database instead`);
    if (!this.branchingOf(db).deletesBranchesWithChildren) {
      const { rows } = await this.catalog.query<{ name: string }>('SELECT name FROM branches WHERE parent_id = $1 ORDER BY name', [branch.id]);
      if (rows.length) {
        throw new ConflictError(`branch "${name}" has child branches (${rows.map((r) => r.name).join(', ')}): in region "${db.region}" they must be deleted first`);
      }
    }
    await this.discard(db, await this.route(branch.id));
  }

  /** The branch becomes a fresh copy of its parent as it is now; its sessions end first. */
  async reset(partnerId: string, databaseId: string, name: string): Promise<BranchRecord> {
    const db = await this.databases.get(partnerId, databaseId);
    return revive(await this.owned(db, { action: 'reset', partnerId, databaseId, name }) as BranchRecord);
  }

  private async runReset(db: DatabaseRecord, name: string): Promise<BranchRecord> {
    const databaseId = db.id;
    const branching = this.branchingOf(db);
    const branch = await this.byName(databaseId, name);
    if (branch.parent === null) throw new BadRequestError(`branch "${name}" has no parent to reset from`);
    const route = await this.route(branch.id);
    const parentRoute = await this.route((await this.byName(databaseId, branch.parent)).id);
    const reason = new BranchRewoundError(`terminating connection: branch "${name}" is being reset to its parent "${branch.parent}"; reconnect to use it`);
    await this.computes.hold(this.targetFor(route), reason, () =>
      this.computes.guard(this.targetFor(parentRoute), (running) =>
        branching.reset(branchRefOf(route), branchRefOf(parentRoute), running, async (tx) => {
          await tx.query('UPDATE branches SET parent_time = now(), parent_lsn = NULL WHERE id = $1', [branch.id]);
        })));
    // Warm backends of its compute (proxy/warm-backends.ts) went with the stop; the fleet hears it too.
    await this.routes.changed(databaseId);
    return this.byName(databaseId, name);
  }

  /**
   * Rewinds a branch (default: the root) to `at`, keeping its endpoint; the state it had just
   * before is kept as the new branch `<branch>_before_<timestamp>`.
   */
  async restore(partnerId: string, databaseId: string, input: { at: string; branch?: string }): Promise<{ branch: BranchRecord; before: BranchRecord }> {
    const db = await this.databases.get(partnerId, databaseId);
    const r = await this.owned(db, { action: 'restore', partnerId, databaseId, input }) as { branch: BranchRecord; before: BranchRecord };
    return { branch: revive(r.branch), before: revive(r.before) };
  }

  private async runRestore(db: DatabaseRecord, input: { at: string; branch?: string }): Promise<{ branch: BranchRecord; before: BranchRecord }> {
    const databaseId = db.id;
    const branching = this.branchingOf(db);
    const branch = await this.byName(databaseId, input.branch);
    const at = await this.validateAt(db, branch, input.at);
    const beforeName = `${branch.name}_before_${stamp(new Date())}`;
    const beforeId = await this.insertCreating(databaseId, beforeName, branch.id, undefined);
    const beforeRoute = await this.route(beforeId);
    const route = await this.route(branch.id);
    const reason = new BranchRewoundError(`terminating connection: branch "${branch.name}" is being restored to ${describePoint(at)}; reconnect to use it`);
    try {
      await this.computes.hold(this.targetFor(route), reason, () =>
        branching.restore(branchRefOf(route), at, branchRefOf(beforeRoute), async (tx, kept) => {
          await tx.query(`UPDATE branches SET state = 'ready', provider_state = $2 WHERE id = $1`, [beforeId, kept ?? {}]);
        }));
      await this.routes.changed(databaseId);
    } catch (err) {
      await this.catalog.query(`DELETE FROM branches WHERE id = $1 AND state = 'creating'`, [beforeId]).catch(() => {});
      throw err;
    } finally {
      this.making.delete(beforeId);
    }
    return { branch: await this.byName(databaseId, branch.name), before: await this.byName(databaseId, beforeName) };
  }

  /**
   * At start, before anything is served: restores and resets a crash interrupted are put back,
   * branches the provider had made are finished, and branches that were being made are removed
   * with their files.
   */
  async recoverInterrupted(): Promise<void> {
    for (const provider of this.regions.providers()) await provider.branching?.recoverInterrupted();
    await this.removeAbandoned();
  }

  /**
   * Removes 'creating' branches nobody is making any more, with what their provider made: this
   * node's own local ones that this process is not making (only this node makes them), and those of
   * a shared provider (Neon, any gateway may be making one) older than abandonedCreateMs, or any
   * age when this gateway is alone. Another node's local ones are that node's.
   */
  private async removeAbandoned(): Promise<void> {
    const { rows } = await this.catalog.query<{ id: string; database_id: string; age_ms: number }>(
      `SELECT id, database_id, extract(epoch FROM clock_timestamp() - created_at)::float8 * 1000 AS age_ms FROM branches WHERE state = 'creating'`);
    for (const row of rows) {
      if (this.making.has(row.id)) continue;
      const route = await routeByBranch(this.catalog, row.id);
      // Another node's local branches are that node's to remove.
      if (!route || !this.owners.ofRoute(route).here) continue;
      if (route.node === null && this.fleet && row.age_ms < this.abandonedCreateMs) continue;
      this.log.warn({ branch: row.id, database: row.database_id }, 'removing a branch whose creation was interrupted');
      try {
        // What the provider made goes first: a failure leaves the row (never routed) for the next pass.
        await this.regions.get(route.region).provider.delete(branchRefOf(route));
        await this.catalog.query(`DELETE FROM branches WHERE id = $1 AND state = 'creating'`, [row.id]);
      } catch (err) {
        this.log.error({ branch: row.id, err: String(err) }, 'could not remove a branch whose creation was interrupted; the next upkeep tries again');
      }
    }
  }

  /**
   * Every branch of every database: prune history beyond retention; base backups of long-running
   * computes; then branches whose creation was abandoned are removed.
   */
  async upkeep(): Promise<void> {
    const { rows } = await this.catalog.query<{ id: string; node_id: string | null }>('SELECT id, node_id FROM databases');
    // Each node keeps up the databases placed on it (their store is shared: two would prune at once).
    for (const { id } of rows.filter((r) => this.owners.of(r.node_id).here)) {
      const retention = await this.retentionSeconds(id);
      for (const route of await routesOfDatabase(this.catalog, id)) {
        const branching = this.regions.get(route.region).provider.branching;
        if (!branching) continue;
        const ref = branchRefOf(route);
        try {
          await branching.prune(ref, retention);
          if (this.computes.info(route.branchId).state === 'running') {
            await this.computes.guard(this.targetFor(route), (running) => (running ? branching.backupIfDue(ref, retention) : Promise.resolve()));
          }
        } catch (err) {
          // A compute suspended while its base backup was made breaks that backup; its stop makes one from the stopped files.
          const stopped = this.computes.info(route.branchId).state !== 'running';
          this.log[stopped ? 'debug' : 'warn']({ branch: route.branchId, err: String(err) }, stopped ? 'history upkeep cut short by a stop' : 'history upkeep failed');
        }
      }
    }
    await this.removeAbandoned();
  }
}

export function validateBranchName(name: string): void {
  if (!BRANCH_NAME.test(name)) throw new BadRequestError('name: must be 1 to 100 characters of A-Z, a-z, 0-9, ".", "_" and "-", starting with a letter or digit');
}
