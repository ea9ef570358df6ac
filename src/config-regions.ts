import { ConfigError } from './errors.ts';

type Env = Record<string, string | undefined>;

export const NEON_DEFAULT_API_HOST = 'https://console.neon.tech/api/v2';

export interface NeonRegionSettings {
  /** Neon's region_id, e.g. aws-us-east-2. */
  regionId: string;
  apiKey: string;
  /** Base URL of Neon's API. */
  apiHost: string;
  orgId: string | undefined;
}

/** `pgVersion`: the region's default Postgres major; undefined = the gateway's (PGFLEET_PG_VERSION). */
export type RegionConfig =
  | { id: string; provider: 'local'; pgVersion: number | undefined }
  | { id: string; provider: 'neon'; pgVersion: number | undefined; neon: NeonRegionSettings };

/** The major of a neon region when neither it nor PGFLEET_PG_VERSION names one (Neon's own default). */
export const NEON_DEFAULT_PG_VERSION = 17;
/** The majors Neon runs (its OpenAPI document's PgVersion). */
export const NEON_PG_VERSIONS = [14, 15, 16, 17, 18] as const;

const VAR = 'PGFLEET_REGIONS';
const REGION_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const KEYS = { local: ['provider', 'pg_version'], neon: ['provider', 'region_id', 'api_key_env', 'api_host', 'org_id', 'pg_version'] };

function apiHost(raw: string, variable: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(variable, `is not a valid URL: "${raw}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(variable, `must use https: (or http:), got ${url.protocol}`);
  return raw.replace(/\/+$/, '');
}

function neonRegion(env: Env, id: string, spec: Record<string, unknown>): NeonRegionSettings {
  const field = (name: string) => {
    const v = spec[name];
    if (v !== undefined && typeof v !== 'string') throw new ConfigError(VAR, `${id}.${name} must be a string`);
    return v as string | undefined;
  };
  const regionId = field('region_id') ?? id;
  const keyVar = field('api_key_env') ?? 'NEON_API_KEY';
  if (!/^[A-Z_][A-Z0-9_]*$/.test(keyVar)) throw new ConfigError(VAR, `${id}.api_key_env must name an environment variable, got "${keyVar}"`);
  const apiKey = env[keyVar];
  if (!apiKey) throw new ConfigError(keyVar, `is needed by the neon region "${id}" of ${VAR}`);
  const host = field('api_host');
  return {
    regionId,
    apiKey,
    apiHost: host !== undefined ? apiHost(host, VAR) : apiHost(env.NEON_API_HOST || NEON_DEFAULT_API_HOST, 'NEON_API_HOST'),
    orgId: field('org_id'),
  };
}

/** A region's `pg_version`: Neon's majors are checked here; a local region's against the binaries installed, at start. */
function regionPgVersion(id: string, spec: Record<string, unknown>): number | undefined {
  const v = spec.pg_version;
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ConfigError(VAR, `${id}.pg_version must be a Postgres major version such as 17`);
  if (spec.provider === 'neon' && !(NEON_PG_VERSIONS as readonly number[]).includes(v)) {
    throw new ConfigError(VAR, `${id}.pg_version must be a major Neon runs: ${NEON_PG_VERSIONS.join(', ')}`);
  }
  return v;
}

/**
 * Regions from PGFLEET_REGIONS, a JSON object of region id → settings. `local` exists first
 * (and so is the default) unless the object names it, which places it, or sets it to null,
 * which removes it. Every region must say its provider.
 */
export function parseRegions(env: Env): RegionConfig[] {
  const raw = env[VAR];
  if (raw === undefined || raw.trim() === '') return [{ id: 'local', provider: 'local', pgVersion: undefined }];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new ConfigError(VAR, `is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(VAR, 'must be a JSON object of region id → settings');
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (!('local' in (parsed as object))) entries.unshift(['local', { provider: 'local' }]);
  const regions: RegionConfig[] = [];
  for (const [id, spec] of entries) {
    if (!REGION_ID.test(id)) throw new ConfigError(VAR, `"${id}" is not a region id (lower-case letters, digits and -)`);
    if (spec === null && id === 'local') continue;
    if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new ConfigError(VAR, `${id} must be an object`);
    const s = spec as Record<string, unknown>;
    if (s.provider !== 'local' && s.provider !== 'neon') throw new ConfigError(VAR, `${id}.provider must be "local" or "neon"`);
    const unknown = Object.keys(s).filter((k) => !KEYS[s.provider as 'local' | 'neon'].includes(k));
    if (unknown.length) throw new ConfigError(VAR, `${id}: unknown setting ${unknown.join(', ')}; known: ${KEYS[s.provider].join(', ')}`);
    const pgVersion = regionPgVersion(id, s);
    regions.push(s.provider === 'local' ? { id, provider: 'local', pgVersion } : { id, provider: 'neon', pgVersion, neon: neonRegion(env, id, s) });
  }
  if (regions.length === 0) throw new ConfigError(VAR, 'names no region');
  return regions;
}
