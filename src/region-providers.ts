/** The providers and default Postgres majors of the configured regions, checked before anything starts. */
import type { Config } from './config.ts';
import { NEON_DEFAULT_PG_VERSION, NEON_PG_VERSIONS } from './config-regions.ts';
import { ConfigError } from './errors.ts';
import type { Logger } from './log.ts';
import type { PgInstalls } from './pg/install.ts';
import type { LocalProvider } from './providers/local/local-provider.ts';
import { NeonProvider } from './providers/neon/neon-provider.ts';
import type { Region } from './regions.ts';
import { SecretBox, ensureSecretKey } from './secret-box.ts';

/** Each configured region with its provider: the local one, or a Neon provider per neon region. */
export function buildRegions(config: Config, local: LocalProvider, majors: Map<string, number>, log: Logger): Region[] {
  let box: SecretBox | undefined;
  return config.regions.map((r) => {
    const pgVersion = majors.get(r.id)!;
    if (r.provider === 'local') return { id: r.id, provider: local, pgVersion };
    box ??= new SecretBox(ensureSecretKey(config.dataDir, config.secretKey));
    const provider = new NeonProvider({
      region: r.neon, box, ca: config.neon.ca, port: config.neon.port, operationTimeoutMs: config.neon.operationTimeoutMs,
      requestTimeoutMs: config.neon.requestTimeoutMs, maxConcurrency: config.neon.maxConcurrency, wake: config.neon.wake,
      log: log.child({ region: r.id }),
    });
    return { id: r.id, provider, pgVersion };
  });
}

/**
 * Each region's default major: its own `pg_version`, else PGFLEET_PG_VERSION, else (local) the
 * preferred binaries' or (neon) Neon's default; checked against what its provider runs before
 * anything starts.
 */
export function defaultMajors(config: Config, installs: PgInstalls): Map<string, number> {
  return new Map(config.regions.map((r) => {
    const offered: readonly number[] = r.provider === 'local' ? installs.majors : NEON_PG_VERSIONS;
    const major = r.pgVersion ?? config.pgVersion ?? (r.provider === 'local' ? installs.preferred : NEON_DEFAULT_PG_VERSION);
    if (!offered.includes(major)) {
      const hint = r.provider === 'local' ? `; point PGFLEET_PG_BIN at the binaries of Postgres ${major}` : '';
      throw new ConfigError(r.pgVersion !== undefined ? 'PGFLEET_REGIONS' : 'PGFLEET_PG_VERSION',
        `region "${r.id}" would run Postgres ${major}, which its provider does not offer (it runs ${offered.join(', ')}${hint})`);
    }
    return [r.id, major];
  }));
}
