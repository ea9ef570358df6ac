import { EventEmitter } from 'node:events';
import type { Catalog } from './catalog/catalog.ts';
import type { RouteCache } from './catalog/route-cache.ts';
import { type BranchRoute, branchRefOf, routeByDatabase, routesOfDatabase } from './catalog/routes.ts';
import { BadRequestError, ConflictError, DatabaseUnavailableError, NotFoundError } from './errors.ts';
import { generateName } from './names.ts';
import { checkFloorFitsHost } from './autoscaling.ts';
import { type Quotas, validateQuotas } from './quotas.ts';
import type { BranchRef, ProviderState } from './providers/provider.ts';
import { type ProviderDeletions, recordDeletion } from './provider-sync/deletions.ts';
import { type Regions, pgVersionFor } from './regions.ts';
import type { Nodes } from './nodes/nodes.ts';
import type { OwnedState, Owners } from './nodes/owners.ts';
import { generatePassword, makeScramVerifier } from './scram-verifier.ts';
import {
  type DatabaseChanges, type DatabaseRecord, type DatabaseStatus, decodeCursor, DEFAULT_DATABASE_NAME, DEFAULT_OWNER_ROLE, encodeCursor,
  INSERT_DATABASE, isUniqueViolation, MAX_PAGE, type NewDatabase, type Page, RESERVED_DATABASES,
  SELECT_DATABASE, toRecord, unavailableReason, validateIdentifier, validateLabels, validateRoleName,
} from './database-records.ts';

const unavailable = (r: DatabaseRecord) => new DatabaseUnavailableError(unavailableReason(r.id, r.status, r.statusDetail));

/**
 * Databases of partners' users: the catalog rows, the provider's resources and the compute.
 * Every read and write is scoped to a partner; another partner's database is "not found".
 * Emits 'quotas' (databaseId, effective quotas) when a database's quotas change.
 */
export class Databases extends EventEmitter {
  constructor(
    private readonly catalog: Catalog,
    /** Told of every committed change to a database's rows. */
    private readonly routes: RouteCache,
    private readonly regions: Regions,
    /** Who runs each database's computes: this gateway, or the node it is placed on. */
    private readonly owners: Owners,
    private readonly nodes: Nodes,
    private readonly defaultSuspendTimeoutSeconds: number,
    private readonly deletions: ProviderDeletions,
  ) {
    super();
  }

  /** Creates the database and its owner role; the password is returned here only. */
  async create(input: NewDatabase): Promise<{ database: DatabaseRecord; password: string }> {
    const region = this.regions.get(input.region);
    if (input.autoscaling && region.provider.name === 'local') checkFloorFitsHost(input.autoscaling);
    const databaseName = validateIdentifier('database_name', input.databaseName ?? DEFAULT_DATABASE_NAME, RESERVED_DATABASES);
    const ownerRole = validateRoleName(input.roleName ?? DEFAULT_OWNER_ROLE);
    const quotas = validateQuotas(input.quotas ?? {});
    const pgVersion = pgVersionFor(region, input.pgVersion);
    const password = generatePassword();
    const verifier = await makeScramVerifier(password);
    const suspendTimeout = input.suspendTimeoutSeconds ?? this.defaultSuspendTimeoutSeconds;
    const durability = input.durability ?? 'async';
    const labels = validateLabels(input.labels ?? {});
    const otherRoles = (input.otherRoles ?? []).filter((r) => r !== ownerRole);
    const otherVerifiers = await Promise.all(otherRoles.map(() => makeScramVerifier(generatePassword())));
    // A local database's data lives on one node: the one with the most room.
    const nodeId = region.provider.name === 'local' ? await this.nodes.place() : null;
    // Else 'creating' until the provider has made its part (a gateway killed between finishes it on restart).
    const status: DatabaseStatus = region.provider.createsAtFirstStart ? 'ready' : 'creating';

    let database: DatabaseRecord | undefined;
    for (let attempt = 0; !database; attempt++) {
      const ids = { databaseId: generateName('db'), branchId: generateName('br'), endpointId: generateName('ep') };
      try {
        // One statement (atomic, one round trip): every row of the new database.
        const { rows } = await this.catalog.query(INSERT_DATABASE, [
          ids.databaseId, input.partnerId, input.userId, input.name ?? null, region.id, region.provider.name,
          databaseName, ownerRole, suspendTimeout, quotas, ids.branchId, ids.endpointId, verifier, nodeId, input.historyRetentionSeconds ?? null,
          input.poolSize ?? null, input.autoscaling?.minCu ?? null, pgVersion, durability, labels, input.kind ?? 'database', input.templateId ?? null,
          otherRoles, otherVerifiers, input.copyOf ?? null, input.autoscaling?.maxCu ?? null, status,
        ]);
        database = {
          id: ids.databaseId, partnerId: input.partnerId, userId: input.userId, name: input.name ?? null, region: region.id,
          provider: region.provider.name, databaseName, ownerRole, roles: [ownerRole, ...otherRoles], endpointId: ids.endpointId,
          branchId: ids.branchId, suspendTimeoutSeconds: suspendTimeout, historyRetentionSeconds: rows[0].effective_retention, quotas,
          poolSize: input.poolSize ?? null, autoscaling: rows[0].min_cu === null ? null : { minCu: rows[0].min_cu, maxCu: rows[0].max_cu }, recordedCu: 0, pgVersion, durability,
          createdAt: rows[0].created_at, lastActiveAt: null, status: 'ready', statusDetail: null,
          nodeId, recordedState: 'suspended', labels, templateId: input.templateId ?? null,
        };
      } catch (err) {
        // Generated names are random; a collision is rare and another draw fixes it.
        if (!isUniqueViolation(err) || attempt >= 4) throw err;
      }
    }
    if (status === 'ready') return { database, password };

    const ref: BranchRef = {
      databaseId: database.id, branchId: database.branchId, root: true, region: region.id, databaseName, ownerRole, roles: [ownerRole, ...otherRoles], providerState: {},
      suspendTimeoutSeconds: suspendTimeout, quotas, autoscaling: database.autoscaling, pgVersion, durability,
      ...(input.copyOf ? { copyOf: input.copyOf } : {}),
    };
    try {
      await this.finishCreate(database.id, await this.owners.of(nodeId).create(region.provider, ref));
    } catch (err) {
      await this.catalog.query('DELETE FROM databases WHERE id = $1', [database.id]);
      await this.routes.changed(database.id);
      throw err;
    }
    return { database, password };
  }

  /**
   * Finishes a create that its gateway left unfinished (it was killed between the provider's answer
   * and the catalog write): the provider finds what the first attempt made and adopts it.
   */
  async resumeCreate(databaseId: string): Promise<void> {
    const route = await routeByDatabase(this.catalog, databaseId);
    if (!route) return;
    await this.finishCreate(databaseId, await this.owners.ofRoute(route).create(this.regions.get(route.region).provider, branchRefOf(route), true));
  }

  /** Keeps what the provider made and marks the database ready to serve. */
  private async finishCreate(databaseId: string, patch: ProviderState): Promise<void> {
    await this.keepState(databaseId, patch, `status = 'ready', status_detail = NULL, status_at = clock_timestamp()`);
  }

  /** The database, or 404 when it does not exist or belongs to another partner. */
  async get(partnerId: string, id: string, kind: 'database' | 'template' = 'database'): Promise<DatabaseRecord> {
    const { rows } = await this.catalog.query(`${SELECT_DATABASE} WHERE d.id = $1 AND d.partner_id = $2 AND d.kind = $3`, [id, partnerId, kind]);
    if (!rows[0]) throw new NotFoundError(`database "${id}" not found`);
    return toRecord(rows[0]);
  }

  /** A partner's databases in creation order, optionally of one user, optionally whose name contains a text. */
  async list(partnerId: string, opts: { userId?: string; nameContains?: string; limit?: number; cursor?: string } = {}): Promise<Page<DatabaseRecord>> {
    const limit = opts.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new BadRequestError(`limit: must be between 1 and ${MAX_PAGE}`);
    const where = ['d.partner_id = $1', `d.kind = 'database'`];
    const values: unknown[] = [partnerId];
    if (opts.userId !== undefined) {
      values.push(opts.userId);
      where.push(`d.user_id = $${values.length}`);
    }
    if (opts.nameContains !== undefined) {
      // The text is matched literally: LIKE's wildcards and escape character are escaped.
      values.push(`%${opts.nameContains.replace(/[\\%_]/g, '\\$&')}%`);
      where.push(`d.name ILIKE $${values.length}`);
    }
    if (opts.cursor !== undefined) {
      const [createdAt, id] = decodeCursor(opts.cursor);
      values.push(createdAt, id);
      where.push(`(d.created_at, d.id) > ('epoch'::timestamptz + $${values.length - 1} * interval '1 microsecond', $${values.length})`);
    }
    values.push(limit + 1);
    const { rows } = await this.catalog.query(
      `${SELECT_DATABASE} WHERE ${where.join(' AND ')} ORDER BY d.created_at, d.id LIMIT $${values.length}`,
      values,
    );
    const more = rows.length > limit;
    const page = rows.slice(0, limit);
    return { items: page.map(toRecord), nextCursor: more ? encodeCursor(page[page.length - 1]) : undefined };
  }

  /**
   * Changes name, suspend timeout or quotas. A provider that enforces settings too (Neon) gets them
   * first, inside the transaction that holds the row: if it refuses, nothing changes here either.
   */
  async update(partnerId: string, id: string, changes: DatabaseChanges): Promise<DatabaseRecord> {
    const sets: string[] = [];
    const values: unknown[] = [id, partnerId];
    if (changes.name !== undefined) {
      values.push(changes.name);
      sets.push(`name = $${values.length}`);
    }
    if (changes.suspendTimeoutSeconds !== undefined) {
      values.push(changes.suspendTimeoutSeconds);
      sets.push(`suspend_timeout_seconds = $${values.length}`);
    }
    if (changes.poolSize !== undefined) {
      values.push(changes.poolSize);
      sets.push(`pool_size = $${values.length}`);
    }
    if (changes.autoscaling !== undefined) {
      values.push(changes.autoscaling?.minCu ?? null, changes.autoscaling?.maxCu ?? null);
      sets.push(`autoscaling_min_cu = $${values.length - 1}`, `autoscaling_max_cu = $${values.length}`);
    }
    if (changes.durability !== undefined) {
      values.push(changes.durability);
      sets.push(`durability = $${values.length}`);
    }
    if (changes.historyRetentionSeconds !== undefined) {
      values.push(changes.historyRetentionSeconds);
      sets.push(`history_retention_seconds = $${values.length}`);
    }
    if (changes.labels !== undefined) {
      values.push(validateLabels(changes.labels));
      sets.push(`labels = $${values.length}`);
    }
    if (changes.quotas !== undefined) {
      // A PATCH of quotas merges: named quotas change, the others stay.
      values.push(validateQuotas(changes.quotas));
      sets.push(`quotas = d.quotas || $${values.length}`);
    }
    const settings = changes.suspendTimeoutSeconds !== undefined || changes.quotas !== undefined || changes.autoscaling !== undefined || changes.durability !== undefined;
    if (sets.length) {
      const before = settings ? await this.get(partnerId, id) : undefined;
      if (before && before.status !== 'ready') throw unavailable(before);
      if (changes.autoscaling && before?.provider === 'local') checkFloorFitsHost(changes.autoscaling);
      const route = before ? await this.routeOf(before) : undefined;
      const effective = await this.catalog.tx(async (c) => {
        const { rows } = await c.query(
          `UPDATE databases d SET ${sets.join(', ')} FROM partners p WHERE d.id = $1 AND d.partner_id = $2 AND p.id = d.partner_id
           RETURNING p.default_quotas || d.quotas AS effective_quotas, d.suspend_timeout_seconds, d.durability, d.region,
             COALESCE(d.autoscaling_min_cu, p.default_autoscaling_min_cu)::float8 AS min_cu, COALESCE(d.autoscaling_max_cu, p.default_autoscaling_max_cu)::float8 AS max_cu`,
          values,
        );
        if (!rows[0]) throw new NotFoundError(`database "${id}" not found`);
        if (route) {
          await this.regions.get(route.region).provider.updateSettings({
            ...branchRefOf(route), suspendTimeoutSeconds: rows[0].suspend_timeout_seconds, quotas: rows[0].effective_quotas,
            autoscaling: rows[0].min_cu === null ? null : { minCu: rows[0].min_cu, maxCu: rows[0].max_cu }, durability: rows[0].durability,
          });
        }
        return rows[0].effective_quotas as Quotas;
      });
      await this.routes.changed(id);
      if (changes.quotas !== undefined) this.emit('quotas', id, effective);
    }
    const record = await this.get(partnerId, id);
    if (changes.suspendTimeoutSeconds !== undefined) {
      const route = await this.routeOf(record);
      this.owners.ofRoute(route).retarget(route);
    }
    return record;
  }

  /**
   * Removes the catalog rows first (no new connection can route) and, in the same transaction,
   * records that the provider's resources of every branch must go; then stops the computes and
   * deletes them, children first (the main branch's removal also removes the database's
   * directory, or its Neon project). A failure there leaves the record, retried in the background
   * (ProviderDeletions) until done.
   */
  async delete(partnerId: string, id: string, kind: 'database' | 'template' = 'database'): Promise<void> {
    const record = await this.get(partnerId, id, kind);
    const routes = (await routesOfDatabase(this.catalog, record.id)).reverse();
    const provider = this.regions.get(record.region).provider;
    await this.catalog.tx(async (c) => {
      const { rowCount } = await c.query('DELETE FROM databases WHERE id = $1 AND partner_id = $2', [id, partnerId]);
      if (!rowCount) throw new NotFoundError(`database "${id}" not found`);
      const refs = routes.map(branchRefOf);
      const owed = provider.rootDeletesAll ? refs.filter((r) => r.root) : refs;
      if (owed.length) await recordDeletion(c, record.id, record.region, partnerId, owed);
    });
    await this.routes.changed(id);
    // The owner stops the computes and drops their files; the provider's own deletion (the store's objects, a Neon project) is owed until done.
    for (const route of routes) await this.owners.ofRoute(route).remove(route);
    if (routes.length) await this.deletions.attempt(id);
  }

  /** Another login role, with the owner's rights; returns its password (shown once). */
  async addRole(partnerId: string, id: string, roleName: string): Promise<{ database: DatabaseRecord; password: string }> {
    validateRoleName(roleName, 'name');
    const record = await this.get(partnerId, id);
    const password = generatePassword();
    try {
      await this.catalog.query('INSERT INTO roles (database_id, name, scram_verifier) VALUES ($1, $2, $3)', [id, roleName, await makeScramVerifier(password)]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`role "${roleName}" already exists`);
      throw err;
    }
    await this.routes.changed(id);
    const updated = await this.get(partnerId, id);
    // Roles belong to the database: every branch gets the new one.
    const provider = this.regions.get(record.region).provider;
    for (const route of await routesOfDatabase(this.catalog, id)) {
      await this.keepState(id, await this.owners.ofRoute(route).syncRoles(provider, route), undefined, route);
    }
    return { database: updated, password };
  }

  /**
   * A new password for a role; the old one stops working for new connections at once. The
   * provider rotates its own secret of the role first (a Neon role password), so a failure
   * there changes nothing here and the call can be repeated.
   */
  async resetPassword(partnerId: string, id: string, roleName: string): Promise<{ database: DatabaseRecord; password: string }> {
    const record = await this.get(partnerId, id);
    if (!record.roles.includes(roleName)) throw new NotFoundError(`role "${roleName}" not found`);
    const password = generatePassword();
    const verifier = await makeScramVerifier(password);
    const state = await this.regions.get(record.region).provider.resetPassword(branchRefOf(await this.routeOf(record)), roleName);
    await this.keepState(id, state);
    const { rowCount } = await this.catalog.query('UPDATE roles SET scram_verifier = $3 WHERE database_id = $1 AND name = $2', [id, roleName, verifier]);
    await this.routes.changed(id);
    if (!rowCount) throw new NotFoundError(`role "${roleName}" not found`);
    return { database: record, password };
  }

  /**
   * Merges what a provider returned into the kept state, in one statement (its row lock orders
   * concurrent merges): the database's, or the branch's own when `branch` is one made from
   * another; `alsoSet` changes more columns of the database.
   */
  private async keepState(databaseId: string, patch: ProviderState, alsoSet?: string, branch?: BranchRoute): Promise<void> {
    if (Object.keys(patch).length === 0 && !alsoSet) return;
    const [table, id] = branch && !branch.root ? ['branches', branch.branchId] : ['databases', databaseId];
    await this.catalog.query(`UPDATE ${table} SET provider_state = merge_provider_state(provider_state, $2)${alsoSet ? `, ${alsoSet}` : ''} WHERE id = $1`, [id, patch]);
    await this.routes.changed(databaseId);
  }

  /** Stops the compute now; the node that owns a local database's data does it. */
  async suspend(partnerId: string, id: string): Promise<DatabaseRecord> {
    const record = await this.get(partnerId, id);
    const route = await this.routeOf(record);
    await this.owners.ofRoute(route).suspend(route);
    return record;
  }

  /** Starts the compute and stops it again, on the owning node (a partner template: its copy made, its first backup taken). */
  async cycle(partnerId: string, id: string, kind: 'database' | 'template'): Promise<void> {
    const route = await this.routeOf(await this.get(partnerId, id, kind));
    const owner = this.owners.ofRoute(route);
    await owner.wake(route);
    await owner.suspend(route);
  }

  /** Starts the compute now (the first connection would otherwise); on the owning node. */
  async wake(partnerId: string, id: string): Promise<DatabaseRecord> {
    const record = await this.get(partnerId, id);
    if (record.status !== 'ready') throw unavailable(record);
    const route = await this.routeOf(record);
    await this.owners.ofRoute(route).wake(route);
    return record;
  }

  /** The compute's state as its owner knows it, and the client sessions this gateway relays to it. */
  stateOf(record: DatabaseRecord): OwnedState {
    return this.owners.of(record.nodeId).state(record.branchId, { state: record.recordedState, lastActiveAt: record.lastActiveAt, connections: 0 });
  }

  private async routeOf(record: DatabaseRecord): Promise<BranchRoute> {
    const route = await routeByDatabase(this.catalog, record.id);
    if (!route) throw new NotFoundError(`database "${record.id}" not found`);
    return route;
  }
}
