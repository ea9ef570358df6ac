import { EndpointType } from '@neondatabase/api-client';
import type { NeonRegionSettings } from '../../config-regions.ts';
import { NAME_PATTERN } from '../../names.ts';
import type { ProviderResource } from '../provider.ts';
import type { NeonApi } from './neon-api.ts';

// Neon's largest page of projects.
const PAGE = 400;

/** A pgfleet-made project is named after its database: db-<word>-<word>-<digits>. */
const isDatabaseName = (name: string) => NAME_PATTERN.test(name) && name.startsWith('db-');

/** The project of this region named `name` (a database id), if Neon has one. */
export async function findProjectNamed(api: NeonApi, region: NeonRegionSettings, name: string, deadline: number): Promise<string | undefined> {
  const r = await api.call('listProjects', [{ search: name, limit: PAGE, ...(region.orgId ? { org_id: region.orgId } : {}) }], deadline);
  return r.projects.find((p) => p.name === name && p.region_id === region.regionId)?.id;
}

/**
 * Every project of this region that pgfleet made (named after a database), page by page.
 * `unavailable`: projects Neon knows but could not describe in time; they are neither orphans nor missing.
 */
export async function listDatabaseProjects(api: NeonApi, region: NeonRegionSettings, deadline: number): Promise<{ projects: ProviderResource[]; unavailable: string[] }> {
  const projects: ProviderResource[] = [];
  const unavailable: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const r = await api.call('listProjects', [{ limit: PAGE, ...(cursor ? { cursor } : {}), ...(region.orgId ? { org_id: region.orgId } : {}) }], deadline);
    for (const p of r.projects) {
      if (p.region_id === region.regionId && isDatabaseName(p.name)) projects.push({ id: p.id, databaseId: p.name, createdAt: new Date(p.created_at) });
    }
    unavailable.push(...(r.unavailable_project_ids ?? []));
    cursor = r.pagination?.cursor;
    if (r.projects.length < PAGE || !cursor) return { projects, unavailable };
  }
}

/** The read-write endpoint of a project (and so its main branch). */
export async function readWriteEndpoint(api: NeonApi, projectId: string, deadline: number): Promise<{ id: string; host: string; branchId: string } | undefined> {
  const { endpoints } = await api.call('listProjectEndpoints', [projectId], deadline);
  const e = endpoints.find((x) => x.type === EndpointType.ReadWrite);
  return e ? { id: e.id, host: e.host, branchId: e.branch_id } : undefined;
}
