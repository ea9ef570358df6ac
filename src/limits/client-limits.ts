/**
 * The proxy's connection caps as they hold: the configured ones, and defaults derived from the
 * descriptor budget (src/fd-limit.ts) for those left unset.
 */
import type { ProxyLimits } from '../config.ts';
import { ConfigError } from '../errors.ts';

export interface ClientLimits extends ProxyLimits {
  maxClientConnections: number;
  maxClientConnectionsPerAddress: number;
  databaseMaxClientConnections: number;
}

/**
 * One database's default share: at most a quarter of the gateway's connections (four tenants
 * cannot fill it), and at most 1,000, which is 50 pools of the default size, or twenty times
 * Postgres's own max_connections default. A partner raises it per database (quota
 * max_client_connections).
 */
const DATABASE_DEFAULT = 1000;

export function resolveClientLimits(configured: ProxyLimits, budget: number): ClientLimits {
  const total = configured.maxClientConnections ?? budget;
  const quarter = Math.max(1, Math.floor(total / 4));
  const perDatabase = configured.databaseMaxClientConnections ?? Math.min(DATABASE_DEFAULT, quarter);
  if (perDatabase > quarter) {
    throw new ConfigError('PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS', `must be at most a quarter of PGFLEET_MAX_CLIENT_CONNECTIONS (${total}): ${quarter}`);
  }
  return {
    ...configured,
    maxClientConnections: total,
    maxClientConnectionsPerAddress: Math.min(total, configured.maxClientConnectionsPerAddress ?? Math.max(1, Math.ceil(total / 8))),
    databaseMaxClientConnections: perDatabase,
  };
}
