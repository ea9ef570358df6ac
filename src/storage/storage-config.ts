import path from 'node:path';
import { ConfigError } from '../errors.ts';
import { type Env, int, truth } from '../env-values.ts';


/** Where the data and history of local databases live. */
export type StorageLocation =
  | { kind: 'file'; root: string }
  | {
    kind: 's3';
    bucket: string;
    /** Key prefix inside the bucket: '' or ending in '/'. */
    prefix: string;
    endpoint: string | undefined;
    region: string;
    pathStyle: boolean;
    credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  };

export interface StorageSettings {
  location: StorageLocation;
  /** Set explicitly (PGFLEET_STORAGE_URL): it outlives this node's disk. Unset: a directory inside the data dir. */
  offHost: boolean;
  /** Committed WAL of an async database reaches the store within this. */
  maxLagMs: number;
  /** WAL of a running compute that may wait on this node's disk while the store is down; past it, writes are refused. */
  maxBacklogBytes: number;
  /** How long a commit of a durability: "sync" database waits for the store before it fails. */
  syncTimeoutMs: number;
  /** One request to the store. */
  requestTimeoutMs: number;
  /** A node silent this long is fenced and its databases placed on live nodes. */
  nodeDeadAfterSeconds: number;
  /** A suspended database's local files go after this long (0 = at once). */
  evictAfterMs: number;
  /** The local files of suspended databases are evicted, least recently used first, beyond this; undefined = no cap. */
  cacheBytes: number | undefined;
}

const VAR = 'PGFLEET_STORAGE_URL';


function flag(value: string | null, fallback: boolean): boolean {
  return value === null ? fallback : truth(value, VAR, 'path_style must');
}

/** `s3://[key:secret@]bucket/prefix?endpoint=…&region=…&path_style=…` or `file:///dir`. */
export function parseStorageUrl(raw: string, env: Env): StorageLocation {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(VAR, 'is not a URL (s3://bucket/prefix or file:///path)');
  }
  if (url.protocol === 'file:') {
    if (url.host !== '' || !path.isAbsolute(decodeURIComponent(url.pathname))) throw new ConfigError(VAR, 'a file:// URL names an absolute path: file:///srv/pgfleet-store');
    return { kind: 'file', root: path.resolve(decodeURIComponent(url.pathname)) };
  }
  if (url.protocol !== 's3:') throw new ConfigError(VAR, `must be s3:// or file://, got ${url.protocol}`);
  const bucket = url.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError(VAR, `"${bucket}" is not a bucket name`);
  const prefix = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, '');
  const known = new Set(['endpoint', 'region', 'path_style']);
  for (const k of url.searchParams.keys()) if (!known.has(k)) throw new ConfigError(VAR, `unknown parameter "${k}" (known: ${[...known].join(', ')})`);
  const endpoint = url.searchParams.get('endpoint') ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint)) throw new ConfigError(VAR, `endpoint must be an http(s) URL, got "${endpoint}"`);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  if ((user === '') !== (password === '')) throw new ConfigError(VAR, 'credentials in the URL are access key and secret together (s3://KEY:SECRET@bucket/prefix)');
  return {
    kind: 's3',
    bucket,
    prefix: prefix === '' ? '' : `${prefix}/`,
    endpoint,
    region: url.searchParams.get('region') ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    // MinIO, Ceph and most servers other than AWS address buckets by path.
    pathStyle: flag(url.searchParams.get('path_style'), endpoint !== undefined),
    credentials: user === '' ? undefined : { accessKeyId: user, secretAccessKey: password },
  };
}

/**
 * Which store this is, the same on every node that shares it (nodes may reach one bucket by
 * different endpoints); a store inside a node's data dir is that node's alone.
 */
export function storeIdentity(settings: StorageSettings, nodeId: string): string {
  if (!settings.offHost) return `node:${nodeId}`;
  const at = settings.location;
  return at.kind === 's3' ? `s3://${at.bucket}/${at.prefix}` : `file://${at.root}`;
}

export function parseStorageSettings(env: Env, dataDir: string, secretKeySet: boolean): StorageSettings {
  const raw = env[VAR];
  const offHost = raw !== undefined && raw !== '';
  // The key that seals the store must outlive this node's disk, or a lost node takes the store's keys with it.
  if (offHost && !secretKeySet) throw new ConfigError('PGFLEET_SECRET_KEY', `must be set when ${VAR} is: it encrypts the store, and a key kept only on this node's disk is lost with it`);
  const cache = env.PGFLEET_LOCAL_CACHE_BYTES;
  return {
    location: offHost ? parseStorageUrl(raw, env) : { kind: 'file', root: path.join(dataDir, 'store') },
    offHost,
    maxLagMs: int(env, 'PGFLEET_STORAGE_MAX_LAG', 1, 1, 3600) * 1000,
    maxBacklogBytes: int(env, 'PGFLEET_STORAGE_MAX_BACKLOG', 256, 16, 1_000_000) * 1024 * 1024,
    syncTimeoutMs: int(env, 'PGFLEET_STORAGE_SYNC_TIMEOUT', 10, 1, 3600) * 1000,
    requestTimeoutMs: int(env, 'PGFLEET_STORAGE_REQUEST_TIMEOUT', 30, 1, 3600) * 1000,
    nodeDeadAfterSeconds: int(env, 'PGFLEET_NODE_DEAD_AFTER', 30, 5, 86400),
    evictAfterMs: int(env, 'PGFLEET_LOCAL_EVICT_AFTER', 3600, 0, 365 * 86400) * 1000,
    cacheBytes: cache === undefined || cache === '' ? undefined : int(env, 'PGFLEET_LOCAL_CACHE_BYTES', 0, 0, Number.MAX_SAFE_INTEGER),
  };
}
