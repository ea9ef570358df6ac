import fs from 'node:fs';
import { Catalog } from './catalog/catalog.ts';
import { type BranchRoute, branchRefOf } from './catalog/routes.ts';
import { type ComputeTarget, ComputeManager } from './computes.ts';
import type { Config } from './config.ts';
import { ensureAdminKey, lockDataDir, prepareDataDir } from './data-dir.ts';
import { type Logger, createLogger } from './log.ts';
import { type JwtAuth, openJwtAuth } from './jwt/jwt-auth.ts';
import { type PgInstall, resolvePgInstall } from './pg/install.ts';
import { type OsUser, makeOwnedDir, resolveComputeUser } from './pg/os-user.ts';
import { chooseRunDir } from './providers/local/layout.ts';
import { LocalProvider } from './providers/local/local-provider.ts';
import { NeonProvider } from './providers/neon/neon-provider.ts';
import { Databases, unavailableReason } from './databases.ts';
import { DatabaseUnavailableError } from './errors.ts';
import { OperatorMetrics } from './metrics.ts';
import { Partners } from './partners.ts';
import { PROVIDER_USAGE_LOOKBACK_MS, PROVIDER_USAGE_PULL_MS, importProviderUsage } from './provider-usage.ts';
import type { Quotas } from './quotas.ts';
import { type Region, Regions } from './regions.ts';
import { SecretBox, ensureSecretKey } from './secret-box.ts';
import { UsageTracker } from './metering/usage-tracker.ts';
import { ProviderDeletions } from './provider-sync/deletions.ts';
import { SyncMetrics } from './provider-sync/metrics.ts';
import { Reconciler } from './provider-sync/reconcile.ts';

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
  install: PgInstall;
  runDir: string;
  adminKeyHash: string;
  catalog: Catalog;
  local: LocalProvider;
  regions: Regions;
  computes: ComputeManager;
  databases: Databases;
  partners: Partners;
  usage: UsageTracker;
  metrics: OperatorMetrics;
  /** JWT authentication: pgfleet's signing keys and tokens, partners' issuers, the proxy's token check. */
  jwt: JwtAuth;
  /** Provider deletions owed and retried until done. */
  deletions: ProviderDeletions;
  /** Catalog ↔ provider reconciliation (orphans, missing resources, unfinished creates). */
  reconciler: Reconciler;
  /** What the compute manager needs for a branch the catalog routed to. */
  targetFor(route: BranchRoute): ComputeTarget;
  stop(): Promise<void>;
}

export async function startCore(config: Config, log: Logger = createLogger(config.logLevel)): Promise<Core> {
  prepareDataDir(config.dataDir);
  const unlock = lockDataDir(config.dataDir);
  const cleanups: (() => Promise<void> | void)[] = [unlock];
  const undo = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    const user = resolveComputeUser(config.computeUser);
    const install = resolvePgInstall(config.pgBin, user, config.dataDir);
    log.info({ version: install.version, bin: install.binDir, compute_user: user.name }, 'postgres binaries');
    const runDir = chooseRunDir(config.dataDir);
    if (!fs.existsSync(runDir)) makeOwnedDir(runDir, { ...user, switchUser: false }, 0o711);
    const adminKeyHash = ensureAdminKey(config.dataDir, config.adminKey, (key, file) => {
      process.stderr.write(`\npgfleet operator key (shown once, kept in ${file}):\n  ${key}\n\n`);
    });

    const catalog = await Catalog.open({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, runDir, install, user, log });
    cleanups.push(() => catalog.close());

    const computes = new ComputeManager({ maxComputes: config.maxComputes, wakeTimeoutMs: config.wakeTimeoutMs, log });
    const local = new LocalProvider(
      { dataDir: config.dataDir, runDir, install, user, compute: config.compute, startTimeoutMs: config.wakeTimeoutMs, log },
      { onComputeExit: (branchId) => computes.computeExited(branchId) },
    );
    cleanups.push(() => local.shutdown());
    await local.clearOrphans();
    // Nothing runs after a (re)start until a connection or the API wakes it.
    await catalog.query(`UPDATE computes SET state = 'suspended', pid = NULL, updated_at = now() WHERE state <> 'suspended'`);
    const usage = new UsageTracker(catalog, computes, { flushSeconds: config.usageFlushSeconds, log });
    const metrics = new OperatorMetrics(computes);
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

    const regions = new Regions(buildRegions(config, local, log));
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
    const syncMetrics = new SyncMetrics(metrics.registry, catalog);
    const deletions = new ProviderDeletions(catalog, regions, syncMetrics, log.child({ part: 'deletions' }));
    const databases = new Databases(catalog, regions, computes, targetFor, config.defaultSuspendTimeoutSeconds, deletions);
    const reconciler = new Reconciler(catalog, regions, databases, deletions, syncMetrics, log.child({ part: 'reconcile' }), {
      orphanGraceMs: config.neon.orphanGraceMs,
      // A create gives up after its operation timeout (twice, with its queueing): later, its gateway is gone.
      abandonedCreateMs: 2 * config.neon.operationTimeoutMs + 60_000,
    });
    deletions.start(DELETION_RETRY_TICK_MS);
    cleanups.push(() => deletions.stop());
    // With its own catalog (no DATABASE_URL) this gateway is alone: every unfinished create was left by a crash.
    reconciler.start(config.neon.reconcileIntervalMs, { resumeAllCreates: config.databaseUrl === undefined });
    cleanups.push(() => reconciler.stop());
    databases.on('quotas', (databaseId: string, quotas: Quotas) => usage.quotasChanged(databaseId, quotas));
    const partners = new Partners(catalog, databases, adminKeyHash);
    const jwt = await openJwtAuth(config, catalog, log);
    return {
      config, log, user, install, runDir, adminKeyHash, catalog, local, regions, computes, databases, partners, usage, metrics, jwt, targetFor,
      deletions, reconciler,
      stop: undo,
    };
  } catch (err) {
    await undo();
    throw err;
  }
}

/** Each configured region with its provider: the local one, or a Neon provider per neon region. */
function buildRegions(config: Config, local: LocalProvider, log: Logger): Region[] {
  let box: SecretBox | undefined;
  return config.regions.map((r) => {
    if (r.provider === 'local') return { id: r.id, provider: local };
    box ??= new SecretBox(ensureSecretKey(config.dataDir, config.secretKey));
    const provider = new NeonProvider({
      region: r.neon, box, ca: config.neon.ca, port: config.neon.port, operationTimeoutMs: config.neon.operationTimeoutMs,
      requestTimeoutMs: config.neon.requestTimeoutMs, maxConcurrency: config.neon.maxConcurrency, log: log.child({ region: r.id }),
    });
    return { id: r.id, provider };
  });
}
