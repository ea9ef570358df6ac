import fs from 'node:fs';
import { Catalog } from './catalog/catalog.ts';
import { RouteCache } from './catalog/route-cache.ts';
import { type BranchRoute, branchRefOf } from './catalog/routes.ts';
import { ComputeManager } from './computes.ts';
import type { ComputeTarget, TerminateScope } from './compute-target.ts';
import type { Config } from './config.ts';
import { backfillPgVersions } from './catalog/pg-version-backfill.ts';
import { ensureAdminKey, lockDataDir, prepareDataDir } from './data-dir.ts';
import { type Logger, createLogger } from './log.ts';
import { type JwtAuth, openJwtAuth } from './jwt/jwt-auth.ts';
import { FleetKeys } from './jwt/fleet-keys.ts';
import { ComputeCgroups, detectCgroups } from './limits/cgroups.ts';
import { PgInstalls } from './pg/install.ts';
import { type OsUser, currentUser, isRoot, makeOwnedDir, resolveComputeUser } from './pg/os-user.ts';
import { chooseRunDir } from './providers/local/layout.ts';
import type { LocalProvider } from './providers/local/local-provider.ts';
import { openLocalProvider } from './providers/local/open-local.ts';
import { ComputeSizes } from './compute-sizes.ts';
import { StorageMetrics } from './providers/local/storage-metrics.ts';
import { Owners } from './nodes/owners.ts';
import { Databases } from './databases.ts';
import { unavailableReason } from './database-records.ts';
import { DatabaseUnavailableError } from './errors.ts';
import { Branches } from './branches.ts';
import { LocalBranching } from './providers/local/branching.ts';
import { NeonBranching } from './providers/neon/branching.ts';
import { OperatorMetrics } from './metrics.ts';
import { KnownKeys } from './known-keys.ts';
import { type PartnerPrincipal, Partners } from './partners.ts';
import { PROVIDER_USAGE_LOOKBACK_MS, PROVIDER_USAGE_PULL_MS, importProviderUsage } from './provider-usage.ts';
import type { Quotas } from './quotas.ts';
import { Regions } from './regions.ts';
import { buildRegions, defaultMajors } from './region-providers.ts';
import { ensureSecretKey } from './secret-box.ts';
import { NeonProvider } from './providers/neon/neon-provider.ts';
import { MigrationKeys } from './migrations/migration-keys.ts';
import { type Migrations, openMigrations } from './migrations/open.ts';
import { PartnerTemplates } from './partner-templates.ts';
import { UsageTracker } from './metering/usage-tracker.ts';
import { ProviderDeletions } from './provider-sync/deletions.ts';
import { SyncMetrics } from './provider-sync/metrics.ts';
import { Reconciler } from './provider-sync/reconcile.ts';
import { type Coordinator, INVALIDATE } from './coord/coordinator.ts';
import { nodeIdOf, openCoordinator } from './coord/open.ts';
import { PgfleetError } from './errors.ts';
import type { Lease } from './compute-target.ts';
import { nodeKey } from './nodes/node-link.ts';
import { nodeLinkLimits } from './nodes/node-link-guard.ts';
import { startNodeListener } from './nodes/node-listener.ts';
import { Nodes } from './nodes/nodes.ts';
import { fenceDeadNodes } from './nodes/fencing.ts';
import { Drainer } from './nodes/drain.ts';
import { Periodic } from './periodic.ts';
import type { AuditLog } from './audit.ts';
import type { BranchExpiry } from './branch-expiry.ts';
import { recordComputeEvents } from './events/compute-events.ts';
import { Events } from './events/events.ts';
import { startOutbox } from './events/outbox.ts';
import { RecentFailures } from './failures.ts';
import { QuotaEvents } from './metering/quota-events.ts';
import type { Webhooks } from './webhooks/webhooks.ts';
import type { PoolSlots } from './workers/pool-slots.ts';

// A cached route is read again after this long even if no change was heard of (a change made behind the API's back).
const ROUTE_MAX_AGE_MS = 60_000;
// Routes kept in memory at most (about 1 KB each).
const ROUTES_KEPT = 100_000;
// How often owed provider deletions are looked at (each has its own backoff).
const DELETION_RETRY_TICK_MS = 5_000;

/**
 * The core both doors share: catalog, providers by region, the compute manager.
 * Built by startCore, torn down by stop(); knows nothing of HTTP or the wire protocol.
 */
export interface Core {
  config: Config;
  log: Logger;
  user: OsUser;
  /** The Postgres binaries of local computes, one install per major. */
  installs: PgInstalls;
  runDir: string;
  adminKeyHash: string;
  catalog: Catalog;
  local: LocalProvider;
  regions: Regions;
  computes: ComputeManager;
  databases: Databases;
  branches: Branches;
  partners: Partners;
  usage: UsageTracker;
  metrics: OperatorMetrics;
  /** The sizes computes take (current_cu, the charts). */
  sizes: ComputeSizes;
  /** JWT authentication: pgfleet's signing keys and tokens, partners' issuers, the proxy's token check. */
  jwt: JwtAuth;
  /** Provider deletions owed and retried until done. */
  deletions: ProviderDeletions;
  /** Catalog ↔ provider reconciliation (orphans, missing resources, unfinished creates). */
  reconciler: Reconciler;
  /** What this gateway shares with the others of its fleet (in-process when alone). */
  coord: Coordinator;
  /** Endpoint routes in memory; every change to a database's rows calls routes.changed(). */
  routes: RouteCache;
  /** This node's id (PGFLEET_NODE_ID or kept in the data dir). */
  nodeId: string;
  /** The fleet's nodes: where local databases live, and the way to the others. */
  nodes: Nodes;
  /** Moves this node's databases to other nodes (a drain). */
  drainer: Drainer;
  /** The event log and webhook outbox: record() state changes here. */
  events: Events;
  webhooks: Webhooks;
  audit: AuditLog;
  /** Ephemeral branches: their expires_at. */
  branchExpiry: BranchExpiry;
  /** Refused logins seen by this gateway (the operator's console). */
  failures: RecentFailures;
  /** Fleet-wide migrations: the jobs, and this gateway's runner (started once the proxy listens). */
  migrations: Migrations;
  /** Partner templates: copies of partners' databases that new databases are made from. */
  templates: PartnerTemplates;
  /** What the compute manager needs for a branch the catalog routed to. */
  targetFor(route: BranchRoute): ComputeTarget;
  /** A session's hold on the branch's compute: here, or through the node that owns its data. */
  acquire(route: BranchRoute): Promise<Lease>;
  stop(): Promise<void>;
}

/**
 * What the proxy needs of the core: in one process the Core itself, in a proxy worker the one
 * src/workers/worker-core.ts builds (leases and coordination from the primary).
 */
export type ProxyCore = Pick<Core, 'config' | 'log' | 'computes' | 'acquire' | 'metrics' | 'coord' | 'usage' | 'routes' | 'jwt' | 'failures'> & {
  /** Proxy workers: pooled backends counted across workers against pool_size (undefined: this process alone). */
  poolSlots?: PoolSlots;
};

export interface CoreOptions {
  /** The coordinator when not Redis (the primary of proxy workers serves its own to them); default in-process. */
  coordinator?: (nodeId: string) => Coordinator;
}

export async function startCore(config: Config, log: Logger = createLogger(config.logLevel, config.logFormat), opts: CoreOptions = {}): Promise<Core> {
  prepareDataDir(config.dataDir);
  const unlock = lockDataDir(config.dataDir);
  const cleanups: (() => Promise<void> | void)[] = [unlock];
  const undo = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    const user = resolveComputeUser(config.computeUser);
    const installs = PgInstalls.discover(config.pgBin, user, config.dataDir);
    log.info({ versions: installs.majors.map((m) => installs.versionOf(m)), compute_user: user.name }, 'postgres binaries');
    const regionMajors = defaultMajors(config, installs);
    const runDir = chooseRunDir(config.dataDir);
    if (!fs.existsSync(runDir)) makeOwnedDir(runDir, { ...user, switchUser: false }, 0o711);
    const adminKeyHash = ensureAdminKey(config.dataDir, config.adminKey, (key, file) => {
      process.stderr.write(`\npgfleet operator key (shown once, kept in ${file}):\n  ${key}\n\n`);
    });

    announceIsolation(log);
    // The embedded catalog (every verifier, every partner) runs as an OS user of its own.
    const catalogUser = isRoot() ? resolveComputeUser(CATALOG_OS_USER) : user;
    const catalog = await Catalog.open({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, runDir, installs, user: catalogUser, log });
    cleanups.push(() => catalog.close());
    const events = new Events(catalog, log.child({ part: 'events' }));
    // Events recorded after their change are written before the catalog closes.
    cleanups.push(() => events.settle());

    const nodeId = nodeIdOf(config);
    const coord = config.redisUrl || !opts.coordinator ? await openCoordinator(config, nodeId, log) : opts.coordinator(nodeId);
    // Several gateways share the catalog (REDIS_URL): placement, the node link, fencing. (A
    // coordinator served to proxy workers is shared too, but within this node.)
    const inFleet = config.redisUrl !== undefined;
    cleanups.push(() => coord.close());
    const computes = new ComputeManager({
      maxComputes: config.maxComputes, wakeTimeoutMs: config.wakeTimeoutMs, log, coord,
      claimWake: async (branchId, token) => {
        // The fencing rule: a wake whose token is older than the newest recorded one does not start.
        const { rows } = await catalog.query(
          `WITH claimed AS (UPDATE computes SET wake_fence = $2 WHERE branch_id = $1 AND wake_fence < $2 RETURNING 1)
           SELECT NOT EXISTS (SELECT 1 FROM claimed) AND EXISTS (SELECT 1 FROM computes WHERE branch_id = $1) AS superseded`,
          [branchId, token],
        );
        return !rows[0].superseded;
      },
    });
    const cgroups = new ComputeCgroups(detectCgroups(config.compute.cgroups));
    (cgroups.enabled ? log.info.bind(log) : log.warn.bind(log))({
      cgroups: cgroups.host.kind, default_min_cu: config.compute.autoscaling.minCu, default_max_cu: config.compute.autoscaling.maxCu,
    }, `compute sizes: ${cgroups.describe()}`);
    const key = inFleet ? nodeKey(config.secretKey!) : undefined;
    const nodes = new Nodes(nodeId, catalog, key, inFleet, config.wakeTimeoutMs + 10_000, config.storage.nodeDeadAfterSeconds,
      inFleet && config.storage.offHost, log);
    cleanups.push(() => nodes.stop());
    const local = await openLocalProvider(config, {
      catalog, user, installs, runDir, cgroups, log,
      node: { id: nodeId, generation: () => nodes.generation, canWrite: () => nodes.canWrite() },
    }, {
      onComputeExit: (branchId) => computes.computeExited(branchId),
      onStuckCommits: (branchId, backendPids, reason) => computes.emit('terminate', branchId, reason, { backendPids } satisfies TerminateScope),
    });
    cleanups.push(() => local.shutdown());
    const migrationKeys = new MigrationKeys(ensureSecretKey(config.dataDir, config.secretKey));
    local.migrationKeys = (databaseId) => migrationKeys.keyOf(databaseId);
    await local.files.clearOrphans();
    // Nothing runs after a (re)start until a connection or the API wakes it.
    // In a fleet, only this node's computes: the others' run on.
    await catalog.query(
      `UPDATE computes c SET state = 'suspended', pid = NULL, current_cu = 0, updated_at = now() WHERE (state <> 'suspended' OR current_cu <> 0)
         AND ($1::text IS NULL OR c.branch_id IN (SELECT b.id FROM branches b JOIN databases d ON d.id = b.database_id WHERE d.node_id = $1))`,
      [inFleet ? nodeId : null],
    );
    recordComputeEvents(computes, events);
    const usage = new UsageTracker(catalog, computes, coord, {
      flushSeconds: config.usageFlushSeconds, log, defaultAutoscaling: config.compute.autoscaling, quotaEvents: new QuotaEvents(events, log),
      sizeOf: (target) => (target.provider === local ? local.sizeOf(target.ref) : undefined),
    });
    const metrics = new OperatorMetrics(computes);
    const sizes = new ComputeSizes(catalog, log);
    local.onSizeChange = (c) => {
      sizes.record(c.branchId, c.databaseId, c.to);
      if (c.reason !== 'start' && c.reason !== 'stop') metrics.scalings.inc({ direction: c.to > c.from ? 'up' : 'down', reason: c.reason });
    };
    local.scaler.onTick = (cpuUs) => metrics.scalerCpuSeconds.inc(cpuUs / 1e6);
    local.scaler.start();
    cleanups.push(async () => {
      local.scaler.stop();
      await sizes.settled();
    });
    // Another provider's compute: its size as the provider tells it at its start, 0 at its stop.
    computes.on('state', (branchId: string, state: string) => {
      const target = computes.targetOf(branchId);
      if (!target || target.provider === local || (state !== 'running' && state !== 'suspended')) return;
      if (state === 'suspended') return sizes.record(branchId, target.ref.databaseId, 0);
      void target.provider.currentUnits?.(target.ref).then((cu) => sizes.record(branchId, target.ref.databaseId, cu))
        .catch((err) => log.warn({ err: String(err), branch: branchId }, 'could not read the compute size from its provider'));
    });
    local.metrics = new StorageMetrics(metrics.registry, local.running.gauges());
    // Cleanups run in reverse: computes stop (their last usage recorded), then usage is flushed.
    cleanups.push(() => usage.stop());
    cleanups.push(() => computes.shutdown());

    computes.on('state', (branchId: string, state: string) => {
      const info = computes.info(branchId);
      catalog
        .query(
          `INSERT INTO computes (branch_id, state, started_at, last_active_at, updated_at)
           SELECT $1, $2, $3, $4, now() WHERE EXISTS (SELECT 1 FROM branches WHERE id = $1)
           ON CONFLICT (branch_id) DO UPDATE SET state = $2, started_at = $3,
             last_active_at = COALESCE($4, computes.last_active_at), updated_at = now()`,
          [branchId, state, info.startedAt ?? null, info.lastActiveAt ?? null],
        )
        .catch((err) => log.warn({ err: err.message, branch: branchId }, 'could not record compute state'));
    });

    const regions = new Regions(buildRegions(config, local, regionMajors, log));
    await backfillPgVersions(catalog, regions, local, log);
    // The compute template of each local region's major is made (or fetched) now, in the background,
    // rather than by the first connection's wake.
    for (const id of regions.ids) {
      const region = regions.get(id);
      if (region.provider !== local || !installs.has(region.pgVersion)) continue;
      const making = local.opts.storage.templates.ensure(installs.get(region.pgVersion))
        .catch((err) => log.warn({ err: String(err), major: region.pgVersion }, 'could not make the compute template yet; the first wake tries again'));
      // A stop waits for it: its initdb and compaction run processes of their own.
      cleanups.push(async () => {
        await making;
      });
    }
    const usagePull = setInterval(() => {
      const now = Date.now();
      void importProviderUsage(catalog, regions, new Date(now - PROVIDER_USAGE_LOOKBACK_MS), new Date(now), log)
        .catch((err) => log.warn({ err: err.message }, 'provider usage import failed'));
    }, PROVIDER_USAGE_PULL_MS);
    usagePull.unref();
    cleanups.push(() => clearInterval(usagePull));
    const targetFor = (route: BranchRoute): ComputeTarget => ({
      ref: branchRefOf(route),
      partnerId: route.partnerId,
      provider: regions.get(route.region).provider,
      suspendTimeoutSeconds: route.suspendTimeoutSeconds,
      ...(route.status !== 'ready'
        ? { unavailable: new DatabaseUnavailableError(unavailableReason(route.databaseId, route.status, route.statusDetail)) }
        : {}),
    });
    const owners = new Owners(nodes, computes, targetFor);
    const routes = new RouteCache(catalog, coord, {
      maxAgeMs: ROUTE_MAX_AGE_MS, maxEntries: ROUTES_KEPT, keeps: (route) => owners.ofRoute(route).here,
    });
    // Each gateway signs its tokens with its own key; in a fleet every gateway verifies them all.
    const jwt = await openJwtAuth(config, catalog, routes, log, key ? { keys: new FleetKeys(catalog, nodeId), publish: () => nodes.beat() } : undefined);
    const syncMetrics = new SyncMetrics(metrics.registry, catalog);
    const deletions = new ProviderDeletions(catalog, regions, syncMetrics, log.child({ part: 'deletions' }));
    const databases = new Databases(catalog, routes, regions, owners, nodes, config.defaultSuspendTimeoutSeconds, deletions);
    // A create (of a Neon project or branch) gives up after its operation timeout, twice with its queueing: later, its gateway is gone.
    const abandonedCreateMs = 2 * config.neon.operationTimeoutMs + 60_000;
    const branches = new Branches(catalog, routes, regions, databases, computes, owners, nodes.fleet, targetFor, log, config.history.retentionSeconds, abandonedCreateMs);
    local.branching = new LocalBranching(local, local.opts.storage, { backupIntervalMs: config.history.baseBackupIntervalMs, log });
    for (const id of regions.ids) {
      const { provider } = regions.get(id);
      if (provider instanceof NeonProvider) provider.branching = new NeonBranching(provider, id, catalog, log.child({ region: id }));
    }
    const drainer = new Drainer({ catalog, events, nodes, computes, local, owners, routes, targetFor, log: log.child({ part: 'drain' }) });
    // Before anything is served: interrupted restores put back, half-made branches removed.
    await branches.recoverInterrupted();
    if (key) {
      const listener = await startNodeListener({ catalog, computes, local, targetFor, branches, drainer, key, log, limits: nodeLinkLimits(config) }, config.node.host, config.node.port);
      cleanups.push(() => listener.close());
      await nodes.register(config.node.advertise ?? `${config.node.host}:${listener.port}`, config.maxComputes, () => computes.activeCount, () => jwt.keys.jwks());
      // A node declared dead stops its computes at once; the fleet has placed their databases elsewhere.
      nodes.on('fenced', () => {
        local.running.fenceAll();
        void local.files.dropMoved().catch((err) => log.warn({ err: String(err) }, 'could not drop the files of moved databases'));
      });
      nodes.on('lease-lost', () => local.running.fenceAll());
      if (nodes.fencing) {
        const fencing = new Periodic(() => fenceDeadNodes(catalog, events, config.storage.nodeDeadAfterSeconds, log), (err) => log.warn({ err: String(err) }, 'fencing dead nodes failed'));
        fencing.start(nodes.heartbeatMs);
        cleanups.push(() => fencing.stop());
      }
    }
    await local.files.dropMoved();
    // Suspended databases' files go once the store holds them (PGFLEET_LOCAL_EVICT_AFTER, PGFLEET_LOCAL_CACHE_BYTES).
    const storeWatch = new Periodic(() => local.running.watchStore(), (err) => log.warn({ err: String(err) }, 'store watch failed'));
    storeWatch.start(1000);
    cleanups.push(() => storeWatch.stop());
    const eviction = new Periodic(() => local.files.evictIdle(), (err) => log.warn({ err: String(err) }, 'eviction of idle local files failed'));
    eviction.start(Math.max(1000, Math.min(60_000, config.storage.evictAfterMs / 4)));
    cleanups.push(() => eviction.stop());
    // A stop may have taken the cache past PGFLEET_LOCAL_CACHE_BYTES: a pass at once.
    if (config.storage.cacheBytes !== undefined) computes.on('state', (_branchId: string, state: string) => state === 'suspended' && eviction.runNow());
    const upkeep = new Periodic(() => branches.upkeep(), (err) => log.warn({ err: String(err) }, 'history upkeep failed'));
    upkeep.start(config.history.upkeepIntervalMs);
    cleanups.push(() => upkeep.stop());
    const reconciler = new Reconciler(catalog, routes, regions, databases, deletions, syncMetrics, log.child({ part: 'reconcile' }), {
      orphanGraceMs: config.neon.orphanGraceMs,
      abandonedCreateMs,
      events,
    });
    deletions.start(DELETION_RETRY_TICK_MS);
    cleanups.push(() => deletions.stop());
    // With its own catalog (no DATABASE_URL) this gateway is alone: every unfinished create was left by a crash.
    reconciler.start(config.neon.reconcileIntervalMs, { resumeAllCreates: config.databaseUrl === undefined });
    cleanups.push(() => reconciler.stop());
    databases.on('quotas', (databaseId: string, quotas: Quotas) => {
      usage.quotasChanged(databaseId, quotas);
      void coord.publish(INVALIDATE, { type: 'quotas', databaseId, quotas });
    });
    // Sessions told why their compute stops (a quota), or why their commit failed (the store), may be relayed by any gateway.
    computes.on('terminate', (branchId: string, reason: PgfleetError, scope: TerminateScope = {}) => {
      if (!scope.fromFleet && inFleet) {
        void coord.publish(INVALIDATE, { type: 'terminate', from: nodeId, branchId, message: reason.message, sqlstate: reason.sqlstate, code: reason.code, backendPids: scope.backendPids });
      }
    });
    coord.subscribe(INVALIDATE, (m) => {
      if (m.type !== 'terminate' || m.from === nodeId) return;
      const reason = new PgfleetError(m.message as string, m.sqlstate as string, 503, m.code as string);
      computes.emit('terminate', m.branchId, reason, { backendPids: m.backendPids as number[] | undefined, fromFleet: true } satisfies TerminateScope);
    });
    const partners = new Partners(catalog, databases, adminKeyHash, new KnownKeys<PartnerPrincipal>(coord));
    const outbox = await startOutbox({ config, catalog, events, branches, nodeId, metrics, log });
    cleanups.push(() => outbox.stop());
    const migrations = openMigrations({
      catalog, events, tokens: jwt.tokens, keys: migrationKeys, nodeId, leaseMs: config.events.migrationLeaseMs, computes, owners, log,
    });
    // Before the computes stop: a pass under way ends (the databases it was on finish) and lets its job go.
    cleanups.push(() => migrations.runner.stop());
    return {
      config, log, user, installs, runDir, adminKeyHash, catalog, local, regions, computes, databases, branches, partners, usage, metrics, sizes, jwt, coord, routes, nodeId, nodes, drainer, targetFor,
      deletions, reconciler, events, webhooks: outbox.webhooks, audit: outbox.audit, branchExpiry: outbox.expiry, failures: new RecentFailures(), migrations,
      templates: new PartnerTemplates(catalog, databases, branches, regions, log.child({ part: 'templates' })),
      acquire: (route: BranchRoute): Promise<Lease> => owners.ofRoute(route).acquire(route),
      stop: undo,
    };
  } catch (err) {
    await undo();
    throw err;
  }
}

export const CATALOG_OS_USER = 'pgfleet_catalog';

/** Says at start how far tenants are kept apart at the OS level, and what is lost when not root. */
export function announceIsolation(log: Logger, root = isRoot()): void {
  if (root) {
    log.info({ catalog_user: CATALOG_OS_USER, compute_users: 'pgfleet_db<N>, one per database' },
      'OS isolation: the catalog and each database run as OS users of their own; only pgfleet may connect to their sockets');
    return;
  }
  log.warn({ os_user: currentUser().name },
    'OS isolation is lost (pgfleet is not root): the catalog and every compute run as this one OS user, so a tenant that gains code ' +
    'execution in its compute (an extension bug) can read every other database\'s files and the catalog\'s, and connect to their ' +
    'sockets as any role. Run pgfleet as root to give the catalog and each database an OS user of their own.');
}
