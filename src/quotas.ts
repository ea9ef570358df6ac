import { BadRequestError } from './errors.ts';

/** Per-calendar-month limits, and those that hold at any moment. */
export const PERIOD_QUOTAS = ['compute_time_seconds', 'compute_unit_seconds', 'data_transfer_bytes', 'written_data_bytes'] as const;
/** Client connections open at once: max_connections (null = unlimited), max_client_connections (null = the gateway's default). */
export const CONNECTION_QUOTAS = ['max_connections', 'max_client_connections'] as const;
export const QUOTA_NAMES = [...PERIOD_QUOTAS, 'storage_bytes', ...CONNECTION_QUOTAS] as const;
export type QuotaName = (typeof QUOTA_NAMES)[number];
/** A quota per name; null or absent means unlimited (max_client_connections: the gateway's default). */
export type Quotas = Partial<Record<QuotaName, number | null>>;

/** Checks a quotas object from a request; `field` names it in the error. */
export function validateQuotas(value: unknown, field = 'quotas'): Quotas {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequestError(`${field}: must be an object`);
  }
  const quotas: Quotas = {};
  for (const [name, limit] of Object.entries(value)) {
    if (!(QUOTA_NAMES as readonly string[]).includes(name)) {
      throw new BadRequestError(`${field}.${name}: unknown quota; known quotas: ${QUOTA_NAMES.join(', ')}`);
    }
    if (limit !== null && (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0)) {
      throw new BadRequestError(`${field}.${name}: must be a whole number ≥ 0, or null for unlimited`);
    }
    quotas[name as QuotaName] = limit;
  }
  return quotas;
}
