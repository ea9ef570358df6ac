import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.ts';
import type { BranchRoute } from '../catalog/routes.ts';
import type { ComputeManager } from '../computes.ts';
import type { Events } from '../events/events.ts';
import type { GatewayTokens } from '../jwt/gateway-tokens.ts';
import type { Owners } from '../nodes/owners.ts';
import { MigrationJobs } from './jobs.ts';
import type { MigrationKeys } from './migration-keys.ts';
import { MigrationRunner } from './runner.ts';

/** How long a compute the job woke may keep a session (its own, closing) before it is suspended anyway. */
const SETTLE_MS = 5000;

export interface Migrations {
  jobs: MigrationJobs;
  runner: MigrationRunner;
}

/** The migration jobs and this gateway's runner (started by the composition root once the proxy listens). */
export function openMigrations(deps: {
  catalog: Catalog; events: Events; tokens: GatewayTokens; keys: MigrationKeys; nodeId: string; leaseMs: number;
  computes: ComputeManager; owners: Owners; log: Logger;
}): Migrations {
  const { computes, owners } = deps;
  const jobs = new MigrationJobs(deps.catalog, deps.events);
  const runner = new MigrationRunner({
    ...deps,
    log: deps.log.child({ part: 'migrations' }),
    isRunning: async (route: BranchRoute) => {
      if (owners.ofRoute(route).here) return computes.info(route.branchId).state !== 'suspended';
      const { rows } = await deps.catalog.query<{ state: string }>('SELECT state FROM computes WHERE branch_id = $1', [route.branchId]);
      return (rows[0]?.state ?? 'suspended') !== 'suspended';
    },
    suspend: async (route: BranchRoute) => {
      const owner = owners.ofRoute(route);
      if (!owner.here) return { stopped: owner.suspend(route) };
      // The job's own session closes a moment after its client's Terminate; a tenant's would keep it running (idle suspend stops it later).
      const deadline = Date.now() + SETTLE_MS;
      while (computes.info(route.branchId).connections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // The compute is 'stopping' (no longer running) as soon as this is called; its stop goes on.
      return { stopped: computes.info(route.branchId).connections === 0 ? computes.suspend(route.branchId) : Promise.resolve() };
    },
  });
  jobs.onRunnable = () => runner.runNow();
  return { jobs, runner };
}
