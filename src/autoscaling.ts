import os from 'node:os';
import { AutoscalingError } from './errors.ts';
import { CU_MEMORY_BYTES, MAX_COMPUTE_UNITS, MIN_COMPUTE_UNITS, isComputeUnits } from './limits/cgroups.ts';

/** A compute's size range in compute units: it starts at the floor and never goes past the ceiling. */
export interface CuRange {
  minCu: number;
  maxCu: number;
}

/** The range as the API shows and takes it. */
export interface CuRangeView {
  min_cu: number;
  max_cu: number;
}

export const rangeView = (r: CuRange): CuRangeView => ({ min_cu: r.minCu, max_cu: r.maxCu });

const units = (field: string, v: unknown): number => {
  if (typeof v !== 'number' || !isComputeUnits(v)) {
    throw new AutoscalingError(`${field}: must be a multiple of 0.25 from ${MIN_COMPUTE_UNITS} to ${MAX_COMPUTE_UNITS}, not ${JSON.stringify(v)}`);
  }
  return v;
};

/** Checks a range from a request (`field` names it in the error): both bounds valid, floor ≤ ceiling. */
export function parseRange(value: unknown, field = 'autoscaling'): CuRange {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new AutoscalingError(`${field}: must be an object {min_cu, max_cu}`);
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) if (k !== 'min_cu' && k !== 'max_cu') throw new AutoscalingError(`${field}.${k}: unknown field; a range has min_cu and max_cu`);
  const minCu = units(`${field}.min_cu`, v.min_cu);
  const maxCu = units(`${field}.max_cu`, v.max_cu);
  if (minCu > maxCu) throw new AutoscalingError(`${field}.min_cu: ${minCu} is above max_cu ${maxCu}`);
  return { minCu, maxCu };
}

/** `0.25-2` (floor-ceiling) or `1` (a fixed size), as PGFLEET_AUTOSCALING takes it; undefined when malformed. */
export function parseRangeText(text: string): CuRange | undefined {
  const m = /^\s*([\d.]+)\s*(?:-\s*([\d.]+)\s*)?$/.exec(text);
  if (!m) return undefined;
  const minCu = Number(m[1]);
  const maxCu = m[2] === undefined ? minCu : Number(m[2]);
  return isComputeUnits(minCu) && isComputeUnits(maxCu) && minCu <= maxCu ? { minCu, maxCu } : undefined;
}

/** The compute units this host holds in all: its CPUs, and its memory in 4 GiB. */
export function hostComputeUnits(): { cpu: number; memory: number } {
  return { cpu: os.availableParallelism(), memory: os.totalmem() / CU_MEMORY_BYTES };
}

/**
 * Floors are not reservations (computes overcommit the host), but a floor no host could hold is
 * refused: one compute would then hold more than the whole host.
 */
export function checkFloorFitsHost(range: CuRange, field = 'autoscaling'): void {
  const host = hostComputeUnits();
  if (range.minCu > host.cpu) throw new AutoscalingError(`${field}.min_cu: ${range.minCu} CU is more than this host's ${host.cpu} CPUs`, 'floor_exceeds_host');
  if (range.minCu > host.memory) {
    throw new AutoscalingError(`${field}.min_cu: ${range.minCu} CU (${range.minCu * 4} GiB) is more than this host's memory (${(host.memory * 4).toFixed(1)} GiB)`, 'floor_exceeds_host');
  }
}
