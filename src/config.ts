import os from 'node:os';
import path from 'node:path';
import { type RegionConfig, parseRegions } from './config-regions.ts';
import { type CuRange, parseRangeText } from './autoscaling.ts';
import { ConfigError } from './errors.ts';
import { MAX_COMPUTE_UNITS, MIN_COMPUTE_UNITS, isComputeUnits } from './limits/cgroups.ts';
import { TrustedProxies } from './limits/trusted-proxies.ts';
import type { LogFormat } from './log.ts';
import { DEFAULT_NEON_WAKE, type NeonWake } from './providers/neon/neon-settings.ts';
import { type Env, bool, int, memory, oneOf, optional, pemFile, port, secretKey, str, url } from './env-values.ts';
import { type StorageSettings, parseStorageSettings } from './storage/storage-config.ts';
import { parseRetrySchedule } from './webhooks/retry-schedule.ts';

/** Settings of each compute Postgres; small by default so that many fit on one host. */
export interface ComputeSettings {
  sharedBuffers: string;
  maxConnections: number;
  workMem: string;
  /** Extensions a tenant may create. */
  extensions: string[];
  /** The size range of a database that names none (PGFLEET_AUTOSCALING, else PGFLEET_COMPUTE_UNITS fixed; 1 CU = 1 CPU, 4 GiB). */
  autoscaling: CuRange;
  /** A local compute scales down once it has been quiet this long (PGFLEET_AUTOSCALING_SCALE_DOWN_AFTER). */
  scaleDownAfterMs: number;
  /** Put each compute in a cgroup of its size when the host allows it. */
  cgroups: boolean;
}

export interface Config {
  dataDir: string;
  apiHost: string;
  apiPort: number;
  proxyHost: string;
  proxyPort: number;
  /** The serverless door (WebSocket + POST /sql); undefined = not served. */
  httpHost: string;
  httpPort: number | undefined;
  /** Operator key; undefined means "generate at first start and keep under dataDir". */
  adminKey: string | undefined;
  /** PGFLEET_PG_BIN: directories of Postgres binaries, beside the embedded ones. */
  pgBin: string | undefined;
  /** PGFLEET_PG_VERSION: the major of a region that sets none; undefined = PGFLEET_PG_BIN's first, else the embedded default (local), 17 (neon). */
  pgVersion: number | undefined;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /** This node's id in the fleet; undefined = generated and kept under dataDir. */
  nodeId: string | undefined;
  /** The node listener (other gateways reach this node's computes there); see src/nodes. */
  node: NodeSettings;
  domain: string;
  logLevel: string;
  /** PGFLEET_LOG_FORMAT; default: pretty when stdout is a terminal, else JSON. */
  logFormat: LogFormat;
  /** OS user that runs computes when pgfleet runs as root. */
  computeUser: string;
  compute: ComputeSettings;
  maxComputes: number;
  /**
   * Proxy worker processes of `pgfleet start` (PGFLEET_WORKERS, default one fewer than the cores,
   * at least 1: the primary and the node's computes keep a core); they share the proxy and
   * serverless ports; 0 = the proxy runs in the one process with the core.
   */
  workers: number;
  wakeTimeoutMs: number;
  defaultSuspendTimeoutSeconds: number;
  allowPlaintext: boolean;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  usageFlushSeconds: number;
  /** Region id → provider; the first is the default. */
  regions: RegionConfig[];
  /** Key that seals secrets kept in the catalog; undefined = generated under dataDir. */
  secretKey: Buffer | undefined;
  neon: NeonSettings;
  /** API requests per minute per key. */
  apiRateLimit: number;
  /** API requests per minute per client address without a key pgfleet knows. */
  apiUnauthenticatedRateLimit: number;
  /** Connections the API listener holds at once, in total and from one client address. */
  apiMaxConnections: number;
  apiMaxConnectionsPerAddress: number;
  proxyLimits: ProxyLimits;
  /** Load balancers that send a PROXY protocol v2 header (and must). */
  trustedProxies: TrustedProxies;
  sql: SqlSettings;
  jwt: JwtSettings;
  pool: PoolSettings;
  warm: WarmBackendSettings;
  history: HistorySettings;
  /** Where local databases' data and history live (object storage), and the node's disk cache of it. */
  storage: StorageSettings;
  events: EventSettings;
}

/** Events, webhook deliveries and the audit log. */
export interface EventSettings {
  /** Webhook URLs may be plain http and name loopback, link-local and private addresses (tests). */
  webhookAllowInternal: boolean;
  /** The waits between a delivery's attempts; when spent, the delivery has failed. */
  webhookRetryScheduleMs: number[];
  /** One delivery attempt, connect to answer. */
  webhookTimeoutMs: number;
  /** How long audit entries are kept. */
  auditRetentionSeconds: number;
  /** How long a gateway's claim on a migration job lasts unless renewed (src/migrations). */
  migrationLeaseMs: number;
}

/** Backends of direct (not `-pooler`) sessions kept for the next client of the same startup. */
export interface WarmBackendSettings {
  /** Kept per compute at most; 0 = none (every connection starts a backend). */
  maxPerCompute: number;
  /** A kept backend unused this long is closed. */
  idleTimeoutMs: number;
}

/** Transaction pooling on `-pooler` endpoints. */
export interface PoolSettings {
  /** Backends per (branch, role, database name) when the database sets no pool_size. */
  defaultSize: number;
  /** Pooled client connections one gateway accepts. */
  maxClients: number;
  /** How long a client waits for a free backend before 53300. */
  queueTimeoutMs: number;
  /** A pooled backend idle this long is closed (so an idle compute can be suspended). */
  idleTimeoutMs: number;
  /** Prepared statements each backend keeps (PgBouncer's max_prepared_statements). */
  maxPreparedStatements: number;
}

/** History, base backups and retention (branches and point-in-time restore). */
export interface HistorySettings {
  /** pgfleet's default history retention, under partners' defaults and databases' own. */
  retentionSeconds: number;
  /** A running branch gets an online base backup once its newest is older than this. */
  baseBackupIntervalMs: number;
  /** How often retention pruning and scheduled backups run. */
  upkeepIntervalMs: number;
}

/** `POST /sql` requests. */
export interface SqlSettings {
  /** Statements in one batch. */
  maxStatements: number;
  /** Time one request may take from its statements' start to its answer. */
  timeoutMs: number;
}

/** What one client address, or all, may hold of the proxy. */
export interface ProxyLimits {
  /** Client connections at once; undefined = what the descriptor limit leaves after the reserve. */
  maxClientConnections: number | undefined;
  /** From one client address; undefined = an eighth of maxClientConnections. */
  maxClientConnectionsPerAddress: number | undefined;
  /** Of one database, unless its quota max_client_connections says otherwise; undefined = see databaseClientCap. */
  databaseMaxClientConnections: number | undefined;
  maxHandshakes: number;
  maxHandshakesPerAddress: number;
  /** Time from accept to a complete startup packet. */
  startupTimeoutMs: number;
}

/** JWT authentication: pgfleet's own tokens and partners' JWKS. */
export interface JwtSettings {
  /** Longest lifetime of a token pgfleet issues; retired signing keys are kept this long. */
  tokenMaxTtlSeconds: number;
  /** How long a fetched partner JWKS is used before it is fetched again. */
  jwksCacheMaxAgeMs: number;
  /** The least time between two fetches of one partner's JWKS (unknown key, or a failed fetch). */
  jwksCooldownMs: number;
  /** Allow http:// JWKS URIs (development and tests); https:// only otherwise. */
  jwksAllowHttp: boolean;
  /** Allow JWKS URIs on loopback, link-local and private addresses (tests, partners inside the operator's network). */
  jwksAllowInternal: boolean;
}

/** The node listener: TLS with a pre-shared key derived from PGFLEET_SECRET_KEY. */
export interface NodeSettings {
  host: string;
  /** 0 = any free port. */
  port: number;
  /** host:port other nodes dial; default host:port as bound. */
  advertise: string | undefined;
}

/** What every neon region shares. */
export interface NeonSettings {
  /** PEM of extra CAs to trust for Neon compute hosts (beside the system's). */
  ca: string | undefined;
  /** The port Neon computes listen on. */
  port: number;
  /** How long a Neon operation (create, start, suspend, ...) may run before pgfleet gives up. */
  operationTimeoutMs: number;
  /** One HTTP request to Neon's API. */
  requestTimeoutMs: number;
  /** Requests to Neon's API at once, per region. */
  maxConcurrency: number;
  /** Between reconciliation passes; 0 = only the pass at start. */
  reconcileIntervalMs: number;
  /** How long an orphaned project is reported before it is deleted. */
  orphanGraceMs: number;
  /** How a wake starts a suspended endpoint: connect (Neon's proxy starts it) or through the API first. */
  wake: NeonWake;
}


const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The trusted contrib extensions of Postgres 15 to 18 (the same 20): those a non-superuser database owner can create at all. */
export const DEFAULT_EXTENSIONS = [
  'btree_gin', 'btree_gist', 'citext', 'cube', 'dict_int', 'fuzzystrmatch', 'hstore', 'intarray', 'isn', 'lo', 'ltree',
  'pg_trgm', 'pgcrypto', 'seg', 'tablefunc', 'tcn', 'tsm_system_rows', 'tsm_system_time', 'unaccent', 'uuid-ossp',
];

function computeUnits(env: Env): number {
  const text = optional(env, 'PGFLEET_COMPUTE_UNITS');
  if (text === undefined) return 1;
  const cu = Number(text);
  if (!isComputeUnits(cu)) throw new ConfigError('PGFLEET_COMPUTE_UNITS', `must be a multiple of 0.25 from ${MIN_COMPUTE_UNITS} to ${MAX_COMPUTE_UNITS}, not "${text}"`);
  return cu;
}

/** PGFLEET_AUTOSCALING (`0.25-2`, or one size), else PGFLEET_COMPUTE_UNITS as a fixed size. */
function autoscaling(env: Env): CuRange {
  const text = optional(env, 'PGFLEET_AUTOSCALING');
  if (text === undefined) {
    const cu = computeUnits(env);
    return { minCu: cu, maxCu: cu };
  }
  const range = parseRangeText(text);
  if (!range) {
    throw new ConfigError('PGFLEET_AUTOSCALING', `must be floor-ceiling in compute units (e.g. 0.25-2), each a multiple of 0.25 from ${MIN_COMPUTE_UNITS} to ${MAX_COMPUTE_UNITS}, floor ≤ ceiling, not "${text}"`);
  }
  return range;
}

function extensionList(env: Env): string[] {
  const raw = optional(env, 'PGFLEET_EXTENSIONS');
  if (raw === undefined) return DEFAULT_EXTENSIONS;
  const names = raw.split(',').map((n) => n.trim()).filter(Boolean);
  for (const n of names) if (!/^[a-z0-9_-]{1,63}$/.test(n)) throw new ConfigError('PGFLEET_EXTENSIONS', `"${n}" is not an extension name`);
  return [...new Set(names)];
}

/** Reads and validates the whole configuration; throws ConfigError naming the bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const domain = str(env, 'PGFLEET_DOMAIN', 'db.localhost').toLowerCase();
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain)) {
    throw new ConfigError('PGFLEET_DOMAIN', `is not a DNS name: "${domain}"`);
  }
  const logLevel = str(env, 'PGFLEET_LOG_LEVEL', 'info');
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('PGFLEET_LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const logFormat = str(env, 'PGFLEET_LOG_FORMAT', process.stdout.isTTY ? 'pretty' : 'json');
  if (logFormat !== 'json' && logFormat !== 'pretty') throw new ConfigError('PGFLEET_LOG_FORMAT', `must be json or pretty, got "${logFormat}"`);
  const adminKey = optional(env, 'PGFLEET_ADMIN_KEY');
  if (adminKey !== undefined && adminKey.length < 16) {
    throw new ConfigError('PGFLEET_ADMIN_KEY', 'must be at least 16 characters');
  }
  const computeUser = str(env, 'PGFLEET_COMPUTE_USER', 'postgres');
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(computeUser)) {
    throw new ConfigError('PGFLEET_COMPUTE_USER', `is not a valid user name: "${computeUser}"`);
  }
  const tlsCert = optional(env, 'PGFLEET_TLS_CERT');
  const tlsKey = optional(env, 'PGFLEET_TLS_KEY');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError(tlsCert ? 'PGFLEET_TLS_KEY' : 'PGFLEET_TLS_CERT', 'PGFLEET_TLS_CERT and PGFLEET_TLS_KEY go together');
  }
  const redisUrl = url(env, 'REDIS_URL', ['redis:', 'rediss:']);
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const key = secretKey(env);
  if (redisUrl && !databaseUrl) throw new ConfigError('REDIS_URL', 'a fleet shares one catalog: set DATABASE_URL too');
  // Every gateway of a fleet must open what another sealed and trust the same node key.
  if (redisUrl && !key) throw new ConfigError('PGFLEET_SECRET_KEY', 'must be set (the same on every gateway) when REDIS_URL is set');
  if (redisUrl && adminKey === undefined) throw new ConfigError('PGFLEET_ADMIN_KEY', 'must be set (the same on every gateway) when REDIS_URL is set');
  const nodeId = optional(env, 'PGFLEET_NODE_ID');
  if (nodeId !== undefined && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(nodeId)) {
    throw new ConfigError('PGFLEET_NODE_ID', 'must be 1 to 63 characters of a-z, 0-9 and -');
  }
  const advertise = optional(env, 'PGFLEET_NODE_ADVERTISE');
  if (advertise !== undefined && !/^[^\s:]+:\d{1,5}$/.test(advertise)) {
    throw new ConfigError('PGFLEET_NODE_ADVERTISE', `must be host:port, got "${advertise}"`);
  }
  const dataDir = path.resolve(str(env, 'PGFLEET_DATA_DIR', './.pgfleet'));
  return {
    dataDir,
    apiHost: str(env, 'PGFLEET_API_HOST', '127.0.0.1'),
    apiPort: port(env, 'PGFLEET_API_PORT', 8080),
    proxyHost: str(env, 'PGFLEET_PROXY_HOST', '127.0.0.1'),
    proxyPort: port(env, 'PGFLEET_PROXY_PORT', 5432),
    httpHost: str(env, 'PGFLEET_HTTP_HOST', str(env, 'PGFLEET_PROXY_HOST', '127.0.0.1')),
    httpPort: optional(env, 'PGFLEET_HTTP_PORT') === undefined ? undefined : port(env, 'PGFLEET_HTTP_PORT', 0),
    adminKey,
    pgBin: optional(env, 'PGFLEET_PG_BIN'),
    pgVersion: optional(env, 'PGFLEET_PG_VERSION') === undefined ? undefined : int(env, 'PGFLEET_PG_VERSION', 0, 1, 99),
    databaseUrl,
    redisUrl,
    nodeId,
    node: { host: str(env, 'PGFLEET_NODE_HOST', '127.0.0.1'), port: port(env, 'PGFLEET_NODE_PORT', 0), advertise },
    domain,
    logLevel,
    logFormat,
    computeUser,
    compute: {
      sharedBuffers: memory(env, 'PGFLEET_COMPUTE_SHARED_BUFFERS', '16MB'),
      maxConnections: int(env, 'PGFLEET_COMPUTE_MAX_CONNECTIONS', 50, 5, 10000),
      workMem: memory(env, 'PGFLEET_COMPUTE_WORK_MEM', '4MB'),
      extensions: extensionList(env),
      autoscaling: autoscaling(env),
      scaleDownAfterMs: int(env, 'PGFLEET_AUTOSCALING_SCALE_DOWN_AFTER', 30, 1, 86400) * 1000,
      cgroups: oneOf(env, 'PGFLEET_CGROUPS', ['auto', 'off'], 'auto') === 'auto',
    },
    maxComputes: int(env, 'PGFLEET_MAX_COMPUTES', 100, 1, 100000),
    workers: int(env, 'PGFLEET_WORKERS', Math.max(1, os.availableParallelism() - 1), 0, 1024),
    wakeTimeoutMs: int(env, 'PGFLEET_WAKE_TIMEOUT', 30, 1, 3600) * 1000,
    defaultSuspendTimeoutSeconds: int(env, 'PGFLEET_SUSPEND_TIMEOUT', 300, 0, 7 * 86400),
    allowPlaintext: bool(env, 'PGFLEET_ALLOW_PLAINTEXT'),
    tlsCert,
    tlsKey,
    usageFlushSeconds: int(env, 'PGFLEET_USAGE_FLUSH_SECONDS', 60, 1, 3600),
    regions: parseRegions(env),
    secretKey: key,
    neon: {
      ca: pemFile(env, 'PGFLEET_NEON_CA_FILE'),
      port: int(env, 'PGFLEET_NEON_PORT', 5432, 1, 65535),
      operationTimeoutMs: int(env, 'PGFLEET_NEON_OPERATION_TIMEOUT', 120, 1, 3600) * 1000,
      requestTimeoutMs: int(env, 'PGFLEET_NEON_REQUEST_TIMEOUT', 30, 1, 600) * 1000,
      maxConcurrency: int(env, 'PGFLEET_NEON_MAX_CONCURRENCY', 8, 1, 1000),
      reconcileIntervalMs: int(env, 'PGFLEET_NEON_RECONCILE_INTERVAL', 600, 0, 7 * 86400) * 1000,
      orphanGraceMs: int(env, 'PGFLEET_NEON_ORPHAN_GRACE', 86400, 0, 30 * 86400) * 1000,
      wake: oneOf(env, 'PGFLEET_NEON_WAKE', ['connect', 'api'] as const, DEFAULT_NEON_WAKE),
    },
    apiRateLimit: int(env, 'PGFLEET_API_RATE_LIMIT', 1200, 1, 10_000_000),
    apiUnauthenticatedRateLimit: int(env, 'PGFLEET_API_UNAUTHENTICATED_RATE_LIMIT', 60, 1, 10_000_000),
    apiMaxConnections: int(env, 'PGFLEET_API_MAX_CONNECTIONS', 200, 1, 1_000_000),
    apiMaxConnectionsPerAddress: int(env, 'PGFLEET_API_MAX_CONNECTIONS_PER_ADDRESS', 64, 1, 1_000_000),
    proxyLimits: {
      maxClientConnections: optional(env, 'PGFLEET_MAX_CLIENT_CONNECTIONS') === undefined
        ? undefined : int(env, 'PGFLEET_MAX_CLIENT_CONNECTIONS', 0, 1, 10_000_000),
      maxClientConnectionsPerAddress: optional(env, 'PGFLEET_MAX_CLIENT_CONNECTIONS_PER_ADDRESS') === undefined
        ? undefined : int(env, 'PGFLEET_MAX_CLIENT_CONNECTIONS_PER_ADDRESS', 0, 1, 10_000_000),
      databaseMaxClientConnections: optional(env, 'PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS') === undefined
        ? undefined : int(env, 'PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS', 0, 1, 10_000_000),
      maxHandshakes: int(env, 'PGFLEET_MAX_HANDSHAKES', 1000, 1, 10_000_000),
      maxHandshakesPerAddress: int(env, 'PGFLEET_MAX_HANDSHAKES_PER_ADDRESS', 100, 1, 10_000_000),
      startupTimeoutMs: int(env, 'PGFLEET_STARTUP_TIMEOUT', 5, 1, 3600) * 1000,
    },
    trustedProxies: TrustedProxies.parse(optional(env, 'PGFLEET_TRUSTED_PROXIES')),
    sql: {
      maxStatements: int(env, 'PGFLEET_SQL_MAX_STATEMENTS', 1000, 1, 100_000),
      timeoutMs: int(env, 'PGFLEET_SQL_TIMEOUT', 30, 1, 3600) * 1000,
    },
    jwt: {
      tokenMaxTtlSeconds: int(env, 'PGFLEET_TOKEN_MAX_TTL', 86400, 60, 30 * 86400),
      jwksCacheMaxAgeMs: int(env, 'PGFLEET_JWKS_CACHE_MAX_AGE', 600, 0, 86400) * 1000,
      jwksCooldownMs: int(env, 'PGFLEET_JWKS_COOLDOWN', 30, 0, 3600) * 1000,
      jwksAllowHttp: bool(env, 'PGFLEET_JWKS_ALLOW_HTTP'),
      jwksAllowInternal: bool(env, 'PGFLEET_JWKS_ALLOW_INTERNAL'),
    },
    history: {
      retentionSeconds: int(env, 'PGFLEET_HISTORY_RETENTION', 7 * 86400, 0, 365 * 86400),
      baseBackupIntervalMs: int(env, 'PGFLEET_BASE_BACKUP_INTERVAL', 86400, 1, 365 * 86400) * 1000,
      upkeepIntervalMs: int(env, 'PGFLEET_HISTORY_UPKEEP_INTERVAL', 60, 1, 86400) * 1000,
    },
    pool: {
      defaultSize: int(env, 'PGFLEET_POOL_SIZE', 20, 1, 10000),
      maxClients: int(env, 'PGFLEET_POOL_MAX_CLIENTS', 10000, 1, 1_000_000),
      queueTimeoutMs: int(env, 'PGFLEET_POOL_QUEUE_TIMEOUT', 30, 1, 3600) * 1000,
      idleTimeoutMs: int(env, 'PGFLEET_POOL_IDLE_TIMEOUT', 60, 1, 86400) * 1000,
      maxPreparedStatements: int(env, 'PGFLEET_POOL_MAX_PREPARED_STATEMENTS', 200, 1, 100000),
    },
    storage: parseStorageSettings(env, dataDir, key !== undefined),
    events: {
      webhookAllowInternal: bool(env, 'PGFLEET_WEBHOOK_ALLOW_INTERNAL'),
      webhookRetryScheduleMs: parseRetrySchedule('PGFLEET_WEBHOOK_RETRY_SCHEDULE', optional(env, 'PGFLEET_WEBHOOK_RETRY_SCHEDULE')),
      webhookTimeoutMs: int(env, 'PGFLEET_WEBHOOK_TIMEOUT', 10, 1, 300) * 1000,
      auditRetentionSeconds: int(env, 'PGFLEET_AUDIT_RETENTION', 90 * 86400, 3600, 10 * 365 * 86400),
      migrationLeaseMs: int(env, 'PGFLEET_MIGRATION_LEASE', 30, 1, 3600) * 1000,
    },
    warm: {
      maxPerCompute: int(env, 'PGFLEET_WARM_BACKENDS', 16, 0, 10000),
      idleTimeoutMs: int(env, 'PGFLEET_WARM_BACKEND_IDLE_TIMEOUT', 10, 1, 3600) * 1000,
    },
  };
}
