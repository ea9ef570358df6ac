import type { ProjectQuota } from '@neondatabase/api-client';
import type { Quotas } from '../../quotas.ts';

/** Neon's longest suspend timeout; -1 means never suspend. */
const NEON_MAX_SUSPEND_SECONDS = 604_800;

/** pgfleet's suspend timeout (0 = never) as Neon's endpoint setting (-1 = never). */
export function neonSuspendTimeout(seconds: number): number {
  return seconds <= 0 ? -1 : Math.min(seconds, NEON_MAX_SUSPEND_SECONDS);
}

// pgfleet's quota → Neon's project quota of the same meaning.
const NEON_QUOTAS = [
  ['compute_time_seconds', 'compute_time_seconds'],
  ['data_transfer_bytes', 'data_transfer_bytes'],
  ['written_data_bytes', 'written_data_bytes'],
  ['storage_bytes', 'logical_size_bytes'],
] as const;

/**
 * The database's quotas as Neon project quotas, so that Neon stops the compute too when one is
 * spent. Both count per month. Every quota is sent, so that a change replaces what Neon holds:
 * unlimited is 0 at Neon, and so pgfleet's 0 (nothing at all) becomes 1, the least Neon knows.
 * max_connections has no Neon counterpart: the proxy enforces it.
 */
export function neonQuota(quotas: Quotas): ProjectQuota {
  const quota: ProjectQuota = {};
  for (const [ours, theirs] of NEON_QUOTAS) {
    const limit = quotas[ours];
    quota[theirs] = typeof limit === 'number' ? Math.max(1, limit) : 0;
  }
  return quota;
}

/**
 * 'connect': a wake asks nothing of Neon's API; the proxy connects at once and Neon's own proxy
 * starts the suspended endpoint (bench/neon-wake.ts: the faster first row). 'api': the endpoint is
 * started through the API (startProjectEndpoint, its operation awaited) before connecting.
 */
export type NeonWake = 'connect' | 'api';
export const DEFAULT_NEON_WAKE: NeonWake = 'connect';
