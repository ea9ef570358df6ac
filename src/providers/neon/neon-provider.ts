import { ConsumptionHistoryGranularity, EndpointState, EndpointType, type Operation } from '@neondatabase/api-client';
import type { Logger } from 'pino';
import type { NeonRegionSettings } from '../../config-regions.ts';
import { ComputeStartError, ProviderError } from '../../errors.ts';
import type { SecretBox } from '../../secret-box.ts';
import type { BranchRef, ComputeAddress, MeteredUsage, Provider, ProviderState, UsageSample } from '../provider.ts';
import { NeonApi, NeonApiError, type RetryPolicy } from './neon-api.ts';
import { neonQuota, neonSuspendTimeout } from './neon-settings.ts';
import { type NeonState, neonPatch, neonStateOf, passwordContext, requireNeonState } from './neon-state.ts';
import { waitForOperations } from './operations.ts';

export interface NeonProviderOptions {
  region: NeonRegionSettings;
  /** Seals the Neon role passwords kept in the catalog. */
  box: SecretBox;
  /** Extra CAs (PEM) to trust for compute hosts. */
  ca: string | undefined;
  /** The port Neon computes listen on. */
  port: number;
  /** How long a Neon operation may take before pgfleet gives up. */
  operationTimeoutMs: number;
  retry?: Partial<RetryPolicy>;
  log: Logger;
}

// What pgfleet asks Neon's consumption API for, and what each becomes in pgfleet's meters.
/** Neon's consumption metrics → pgfleet's metric and the factor to its unit. */
const CONSUMPTION_METRICS = {
  compute_time_seconds: ['compute_time_ms', 1000],
  active_time_seconds: ['active_time_ms', 1000],
  written_data_bytes: ['written_data_bytes', 1],
  synthetic_storage_size_bytes: ['storage_bytes', 1],
} as const;

const HOUR = 3_600_000;

/**
 * One Neon project per database: created with the database's region, Postgres version,
 * suspend timeout and quotas; woken by starting its endpoint; deleted with the project.
 * Role passwords come from Neon and are kept only sealed. The proxy reaches the endpoint
 * host over TLS (SNI, verified) and authenticates with SCRAM as the role.
 */
export class NeonProvider implements Provider {
  readonly name = 'neon';
  readonly postgresVersion: string;
  readonly api: NeonApi;
  private readonly running = new Set<string>();

  constructor(private readonly opts: NeonProviderOptions) {
    this.postgresVersion = String(opts.region.pgVersion);
    this.api = new NeonApi({ apiKey: opts.region.apiKey, baseUrl: opts.region.apiHost, retry: opts.retry, log: opts.log });
  }

  private deadline(): number {
    return Date.now() + this.opts.operationTimeoutMs;
  }

  private seal(projectId: string, role: string, password: string): string {
    return this.opts.box.seal(password, passwordContext(projectId, role));
  }

  private wait(s: { projectId: string }, operations: Operation[], deadline: number, what: string, error?: (m: string) => Error): Promise<void> {
    return waitForOperations(this.api, s.projectId, operations, { deadline, what, error });
  }

  async create(ref: BranchRef): Promise<ProviderState> {
    const deadline = this.deadline();
    const { region } = this.opts;
    const created = await this.api.call('createProject', [{
      project: {
        name: ref.databaseId,
        region_id: region.regionId,
        pg_version: region.pgVersion,
        ...(region.orgId ? { org_id: region.orgId } : {}),
        default_endpoint_settings: { suspend_timeout_seconds: neonSuspendTimeout(ref.suspendTimeoutSeconds) },
        settings: { quota: neonQuota(ref.quotas) },
        branch: { name: 'main', role_name: ref.ownerRole, database_name: ref.databaseName },
      },
    }], deadline);
    const projectId = created.project.id;
    try {
      const endpoint = created.endpoints.find((e) => e.type === EndpointType.ReadWrite);
      const owner = created.roles.find((r) => r.name === ref.ownerRole);
      if (!endpoint || !owner?.password) {
        throw new ProviderError(`Neon created project ${projectId} without ${endpoint ? `a password for role ${ref.ownerRole}` : 'a read-write endpoint'}`);
      }
      const state: NeonState = {
        projectId, branchId: created.branch.id, endpointId: endpoint.id, host: endpoint.host,
        passwords: { [ref.ownerRole]: this.seal(projectId, ref.ownerRole, owner.password) },
      };
      await this.wait(state, created.operations, deadline, `creating Neon project ${projectId}`);
      for (const role of ref.roles) {
        if (!(role in state.passwords)) state.passwords[role] = await this.createRole(state, role, deadline);
      }
      // Neon starts a new project's compute; pgfleet's compute manager sees it as suspended until its first wake.
      return neonPatch(state);
    } catch (err) {
      await this.api.call('deleteProject', [projectId]).catch((e: Error) => this.opts.log.error({ project: projectId, err: e.message }, 'could not delete the Neon project of a failed create'));
      throw err;
    }
  }

  private async createRole(s: NeonState, role: string, deadline: number): Promise<string> {
    const r = await this.api.call('createProjectBranchRole', [s.projectId, s.branchId, { role: { name: role } }], deadline);
    if (!r.role.password) throw new ProviderError(`Neon created role ${role} in project ${s.projectId} without a password`);
    const sealed = this.seal(s.projectId, role, r.role.password);
    await this.wait(s, r.operations, deadline, `creating role ${role} in Neon project ${s.projectId}`);
    return sealed;
  }

  async start(ref: BranchRef): Promise<ComputeAddress> {
    const s = requireNeonState(ref);
    const deadline = this.deadline();
    let { endpoint } = await this.api.call('getProjectEndpoint', [s.projectId, s.endpointId], deadline);
    if (endpoint.current_state !== EndpointState.Active || endpoint.pending_state !== undefined) {
      const started = await this.api.call('startProjectEndpoint', [s.projectId, s.endpointId], deadline);
      await this.wait(s, started.operations, deadline, `starting Neon endpoint ${s.endpointId}`, (m) => new ComputeStartError(m));
      endpoint = started.endpoint;
    }
    const passwords = new Map<string, string>();
    for (const [role, sealed] of Object.entries(s.passwords)) {
      try {
        passwords.set(role, this.opts.box.open(sealed, passwordContext(s.projectId, role)));
      } catch (err) {
        throw new ProviderError(`the kept Neon password of role ${role} (project ${s.projectId}) cannot be opened: ${(err as Error).message}`);
      }
    }
    this.running.add(ref.branchId);
    return { kind: 'tcp', host: endpoint.host, port: this.opts.port, servername: endpoint.host, ...(this.opts.ca ? { ca: this.opts.ca } : {}), passwords };
  }

  async stop(ref: BranchRef): Promise<void> {
    const s = neonStateOf(ref);
    this.running.delete(ref.branchId);
    if (!s) return;
    const deadline = this.deadline();
    const r = await this.api.call('suspendProjectEndpoint', [s.projectId, s.endpointId], deadline);
    await this.wait(s, r.operations, deadline, `suspending Neon endpoint ${s.endpointId}`);
  }

  /** Deletes the project with its branches, endpoints and data; a project already gone is fine. */
  async delete(ref: BranchRef): Promise<void> {
    const s = neonStateOf(ref);
    this.running.delete(ref.branchId);
    if (!s) return;
    try {
      await this.api.call('deleteProject', [s.projectId], this.deadline());
    } catch (err) {
      if (!(err instanceof NeonApiError && err.status === 404)) throw err;
    }
  }

  /** Creates at Neon the roles pgfleet has and Neon lacks; Neon applies them to the compute itself. */
  async syncRoles(ref: BranchRef): Promise<ProviderState> {
    const s = requireNeonState(ref);
    const deadline = this.deadline();
    // Role names are the tenant's: no prototype to inherit `constructor` or `__proto__` from.
    const passwords: Record<string, string> = Object.create(null);
    for (const role of ref.roles) {
      if (!Object.hasOwn(s.passwords, role)) passwords[role] = await this.createRole(s, role, deadline);
    }
    return Object.keys(passwords).length ? neonPatch({ passwords }) : {};
  }

  /** A new Neon password for the role, in effect once Neon's operations finish. */
  async resetPassword(ref: BranchRef, role: string): Promise<ProviderState> {
    const s = requireNeonState(ref);
    const deadline = this.deadline();
    const r = await this.api.call('resetProjectBranchRolePassword', [s.projectId, s.branchId, role], deadline);
    if (!r.role.password) throw new ProviderError(`Neon reset the password of role ${role} in project ${s.projectId} without returning it`);
    const sealed = this.seal(s.projectId, role, r.role.password);
    await this.wait(s, r.operations, deadline, `resetting the password of role ${role} in Neon project ${s.projectId}`);
    return neonPatch({ passwords: { [role]: sealed } });
  }

  /** Hourly usage from Neon's consumption API, as pgfleet's metrics. */
  readonly meters = Object.values(CONSUMPTION_METRICS).map(([metric]) => metric);

  async usage(ref: BranchRef, from: Date, to: Date): Promise<MeteredUsage[]> {
    const s = neonStateOf(ref);
    if (!s) return [];
    const start = new Date(Math.floor(from.getTime() / HOUR) * HOUR);
    const end = new Date(Math.ceil(to.getTime() / HOUR) * HOUR);
    const r = await this.api.call('getConsumptionHistoryPerProject', [{
      project_ids: [s.projectId],
      from: start.toISOString(),
      to: end.toISOString(),
      granularity: ConsumptionHistoryGranularity.Hourly,
      metrics: Object.keys(CONSUMPTION_METRICS),
      ...(this.opts.region.orgId ? { org_id: this.opts.region.orgId } : {}),
    }], this.deadline());
    const samples: MeteredUsage[] = [];
    for (const project of r.projects.filter((p) => p.project_id === s.projectId)) {
      for (const period of project.periods) {
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

  status(ref: BranchRef): 'running' | 'stopped' {
    return this.running.has(ref.branchId) ? 'running' : 'stopped';
  }

  /** Neon meters WAL and storage itself (usage()); nothing to measure from here. */
  async sample(): Promise<UsageSample> {
    return {};
  }

  /** Nothing runs on this host: computes run at Neon and suspend there when idle. */
  async shutdown(): Promise<void> {
    this.running.clear();
  }
}
