import type { ProjectQuota } from '@neondatabase/api-client';
import type { Quotas } from '../../quotas.ts';

/** Neon's longest suspend timeout; -1 means never suspend. */
const NEON_MAX_SUSPEND_SECONDS = 604_800;

/** pgfleet's suspend timeout (0 = never) as Neon's endpoint setting (-1 = never). */
export function neonSuspendTimeout(seconds: number): number {
  return seconds <= 0 ? -1 : Math.min(seconds, NEON_MAX_SUSPEND_SECONDS);
}

/**
 * The database's quotas as Neon project quotas, so that Neon stops the compute too when one is
 * spent. Both count per month. max_connections has no Neon counterpart: the proxy enforces it.
 */
export function neonQuota(quotas: Quotas): ProjectQuota {
  const quota: ProjectQuota = {};
  if (typeof quotas.compute_time_seconds === 'number') quota.compute_time_seconds = quotas.compute_time_seconds;
  if (typeof quotas.data_transfer_bytes === 'number') quota.data_transfer_bytes = quotas.data_transfer_bytes;
  if (typeof quotas.written_data_bytes === 'number') quota.written_data_bytes = quotas.written_data_bytes;
  if (typeof quotas.storage_bytes === 'number') quota.logical_size_bytes = quotas.storage_bytes;
  return quota;
}
