/** A Neon project's hourly usage, read from Neon's consumption API as pgfleet's metrics. */
import { ConsumptionHistoryGranularity } from '@neondatabase/api-client';
import type { MeteredUsage } from '../provider.ts';
import type { NeonApi } from './neon-api.ts';

/** Neon's consumption metrics → pgfleet's metric and the factor to its unit. */
const CONSUMPTION_METRICS = {
  compute_time_seconds: ['compute_time_ms', 1000],
  active_time_seconds: ['active_time_ms', 1000],
  written_data_bytes: ['written_data_bytes', 1],
  synthetic_storage_size_bytes: ['storage_bytes', 1],
} as const;

/** The metrics Neon meters for its projects (pgfleet does not meter them itself). */
export const NEON_METERS = Object.values(CONSUMPTION_METRICS).map(([metric]) => metric);

const HOUR = 3_600_000;

/** The project's usage in the whole hours that cover [from, to). */
export async function consumption(
  api: NeonApi, project: { projectId: string; orgId?: string }, from: Date, to: Date, deadline: number,
): Promise<MeteredUsage[]> {
  const start = new Date(Math.floor(from.getTime() / HOUR) * HOUR);
  const end = new Date(Math.ceil(to.getTime() / HOUR) * HOUR);
  const r = await api.call('getConsumptionHistoryPerProject', [{
    project_ids: [project.projectId],
    from: start.toISOString(),
    to: end.toISOString(),
    granularity: ConsumptionHistoryGranularity.Hourly,
    metrics: Object.keys(CONSUMPTION_METRICS),
    ...(project.orgId ? { org_id: project.orgId } : {}),
  }], deadline);
  const samples: MeteredUsage[] = [];
  for (const p of r.projects.filter((p) => p.project_id === project.projectId)) {
    for (const period of p.periods) {
      for (const frame of period.consumption) {
        for (const [neonName, [metric, factor]] of Object.entries(CONSUMPTION_METRICS)) {
          const value = frame[neonName as keyof typeof CONSUMPTION_METRICS];
          if (typeof value === 'number') samples.push({ bucket: new Date(frame.timeframe_start), metric, value: value * factor });
        }
      }
    }
  }
  return samples;
}
