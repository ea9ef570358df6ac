import { EndpointState, EndpointType, type Operation } from '@neondatabase/api-client';
import type { Logger } from 'pino';
import { NEON_PG_VERSIONS, type NeonRegionSettings } from '../../config-regions.ts';
import { ComputeStartError, ProviderError } from '../../errors.ts';
import type { Branching } from '../provider.ts';
import type { SecretBox } from '../../secret-box.ts';
import type { BranchRef, ComputeAddress, MeteredUsage, Provider, ProviderResource, ProviderState, UsageSample } from '../provider.ts';
import { NeonApi, NeonApiError, type NeonResult, type RetryPolicy } from './neon-api.ts';
import { findProjectNamed, listDatabaseProjects, readWriteEndpoint } from './project-lookup.ts';
import { DEFAULT_NEON_WAKE, type NeonWake, neonQuota, neonSuspendTimeout } from './neon-settings.ts';
import { type NeonBranchState, type NeonState, isChildBranch, neonPatch, neonStateOf, passwordContext, requireNeonState } from './neon-state.ts';
import { waitForOperations } from './operations.ts';
import { NEON_METERS, consumption } from './consumption.ts';

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
  /** Requests to Neon's API at once for this region. */
  maxConcurrency?: number;
  /** One HTTP request's limit. */
  requestTimeoutMs?: number;
  /** How a wake starts the endpoint; see NeonWake. */
  wake?: NeonWake;
  log: Logger;
}


// Creates whose answer was lost: each is followed by a look-up by name before the next.
const CREATE_ATTEMPTS = 4;

/** The longest history Neon keeps (its API's limit of history_retention_seconds). */
export const NEON_MAX_RETENTION_SECONDS = 2_592_000;

/** A database's range as its endpoint's Neon autoscaling limits (Neon scales itself); none named = Neon's own default. */
export const neonComputeSize = (ref: BranchRef) =>
  ref.autoscaling === null ? {} : { autoscaling_limit_min_cu: ref.autoscaling.minCu, autoscaling_limit_max_cu: ref.autoscaling.maxCu };

/**
 * One Neon project per database: created with the database's region, Postgres major,
 * suspend timeout and quotas; woken by starting its endpoint; deleted with the project.
 * Role passwords come from Neon and are kept only sealed. The proxy reaches the endpoint
 * host over TLS (SNI, verified) and authenticates with SCRAM as the role.
 */
export class NeonProvider implements Provider {
  readonly name = 'neon';
  readonly pgVersions = NEON_PG_VERSIONS;
  readonly rootDeletesAll = true;
  readonly createsAtFirstStart = false;
  readonly api: NeonApi;
  /** Neon's branches (src/providers/neon/branching.ts), set by the gateway once the catalog is open. */
  branching?: Branching;
  private readonly running = new Set<string>();
  /** Per branch: its role passwords as last opened, and the sealed text they were opened from. */
  private readonly opened = new Map<string, { source: Record<string, string>; sealed: string; passwords: ReadonlyMap<string, string> }>();

  constructor(private readonly opts: NeonProviderOptions) {
    this.api = new NeonApi({
      apiKey: opts.region.apiKey, baseUrl: opts.region.apiHost, retry: opts.retry, log: opts.log,
      maxConcurrency: opts.maxConcurrency, requestTimeoutMs: opts.requestTimeoutMs,
    });
  }

  /** Neon's API tells the major of a project, not its minor. */
  postgresVersion(major: number): string {
    return String(major);
  }

  /** When an operation started now must be done. */
  deadline(): number {
    return Date.now() + this.opts.operationTimeoutMs;
  }

  private seal(projectId: string, role: string, password: string): string {
    return this.opts.box.seal(password, passwordContext(projectId, role));
  }

  /** Resolves once Neon has finished the operations (rejects when one fails or the deadline passes). */
  wait(s: { projectId: string }, operations: Operation[], deadline: number, what: string, error?: (m: string) => Error): Promise<void> {
    return waitForOperations(this.api, s.projectId, operations, { deadline, what, error });
  }

  /**
   * Creates the database's project, named after the database. Neon may have made a project for a
   * request whose answer was lost (a timeout, a 5xx, pgfleet killed before it kept the answer):
   * then the project is looked up by that name and adopted, never made twice.
   */
  async create(ref: BranchRef, opts: { again?: boolean } = {}): Promise<ProviderState> {
    const deadline = this.deadline();
    const { region } = this.opts;
    for (let attempt = 1, look = opts.again === true; ; attempt++) {
      if (look) {
        const existing = await findProjectNamed(this.api, region, ref.databaseId, deadline);
        if (existing) {
          this.opts.log.info({ project: existing, database: ref.databaseId }, 'adopting the Neon project an earlier attempt made');
          return this.adopt(ref, existing, deadline);
        }
      }
      let created: NeonResult<'createProject'>;
      try {
        created = await this.api.call('createProject', [{
          project: {
            name: ref.databaseId,
            region_id: region.regionId,
            pg_version: ref.pgVersion,
            ...(region.orgId ? { org_id: region.orgId } : {}),
            default_endpoint_settings: { suspend_timeout_seconds: neonSuspendTimeout(ref.suspendTimeoutSeconds), ...neonComputeSize(ref) },
            settings: { quota: neonQuota(ref.quotas) },
            branch: { name: 'main', role_name: ref.ownerRole, database_name: ref.databaseName },
          },
        }], { deadline, retryAmbiguous: false });
      } catch (err) {
        if (!(err instanceof NeonApiError && err.ambiguous) || attempt >= CREATE_ATTEMPTS || Date.now() >= deadline) throw err;
        this.opts.log.warn({ database: ref.databaseId, err: err.message, attempt }, 'createProject got no clear answer; looking the project up by name before asking again');
        look = true;
        continue;
      }
      return this.finishCreate(ref, created, deadline);
    }
  }

  private async finishCreate(ref: BranchRef, created: NeonResult<'createProject'>, deadline: number): Promise<ProviderState> {
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
        if (!Object.hasOwn(state.passwords, role)) state.passwords[role] = await this.createRole(state, role, deadline);
      }
      // Neon starts a new project's compute; pgfleet's compute manager sees it as suspended until its first wake.
      return neonPatch(ref, state);
    } catch (err) {
      await this.api.call('deleteProject', [projectId]).catch((e: Error) => this.opts.log.error({ project: projectId, err: e.message }, 'could not delete the Neon project of a failed create'));
      throw err;
    }
  }

  /** Takes over a project an earlier attempt made: its endpoint, and each role's password (made when missing). */
  private async adopt(ref: BranchRef, projectId: string, deadline: number): Promise<ProviderState> {
    const endpoint = await readWriteEndpoint(this.api, projectId, deadline);
    if (!endpoint) throw new ProviderError(`Neon project ${projectId} of database ${ref.databaseId} has no read-write endpoint`);
    const state: NeonState = { projectId, branchId: endpoint.branchId, endpointId: endpoint.id, host: endpoint.host, passwords: {} };
    state.passwords = await this.rolePasswords(state, ref.roles, deadline);
    return neonPatch(ref, state);
  }

  /** The Neon password of each role on the Neon branch `s` names, sealed; a role Neon lacks there is created. */
  async rolePasswords(s: { projectId: string; branchId: string }, roles: string[], deadline: number): Promise<Record<string, string>> {
    // Role names are the tenant's (`__proto__` included): a prototype-free object.
    const passwords: Record<string, string> = Object.create(null);
    for (const role of roles) {
      try {
        const { password } = await this.api.call('getProjectBranchRolePassword', [s.projectId, s.branchId, role], deadline);
        passwords[role] = this.seal(s.projectId, role, password);
      } catch (err) {
        if (!(err instanceof NeonApiError && err.status === 404)) throw err;
        passwords[role] = await this.createRole(s, role, deadline);
      }
    }
    return passwords;
  }

  /**
   * The suspend timeout (project default and each branch's endpoint) and quotas at Neon, once Neon
   * has applied them.
   */
  async updateSettings(ref: BranchRef): Promise<void> {
    const s = requireNeonState(ref);
    const deadline = this.deadline();
    const suspend = neonSuspendTimeout(ref.suspendTimeoutSeconds);
    const project = await this.api.call('updateProject', [s.projectId, {
      project: { default_endpoint_settings: { suspend_timeout_seconds: suspend }, settings: { quota: neonQuota(ref.quotas) } },
    }], deadline);
    await this.wait(s, project.operations, deadline, `updating Neon project ${s.projectId}`);
    const { endpoints } = await this.api.call('listProjectEndpoints', [s.projectId], deadline);
    for (const e of endpoints.filter((x) => x.type === EndpointType.ReadWrite)) {
      const endpoint = await this.api.call('updateProjectEndpoint', [s.projectId, e.id, { endpoint: { suspend_timeout_seconds: suspend, ...neonComputeSize(ref) } }], deadline);
      await this.wait(s, endpoint.operations, deadline, `updating Neon endpoint ${e.id}`);
    }
  }

  /** Sets the history retention of the project (Neon keeps at most NEON_MAX_RETENTION_SECONDS); returns what it was set to. */
  async setHistoryRetention(ref: BranchRef, seconds: number): Promise<number> {
    const s = requireNeonState(ref);
    const deadline = this.deadline();
    const kept = Math.min(seconds, NEON_MAX_RETENTION_SECONDS);
    const r = await this.api.call('updateProject', [s.projectId, { project: { history_retention_seconds: kept } }], deadline);
    await this.wait(s, r.operations, deadline, `setting the history retention of Neon project ${s.projectId}`);
    return kept;
  }

  /** The projects of this region pgfleet made (named after a database). */
  async listResources(): Promise<{ resources: ProviderResource[]; unavailable: string[] }> {
    const { projects, unavailable } = await listDatabaseProjects(this.api, this.opts.region, this.deadline());
    return { resources: projects, unavailable };
  }

  async missingResource(ref: BranchRef): Promise<string | undefined> {
    const s = neonStateOf(ref);
    if (!s) return undefined;
    try {
      await this.api.call('getProject', [s.projectId], this.deadline());
      return undefined;
    } catch (err) {
      if (err instanceof NeonApiError && err.status === 404) return `its Neon project ${s.projectId} no longer exists`;
      throw err;
    }
  }

  async deleteResource(projectId: string): Promise<void> {
    await this.deleteProject(projectId);
  }

  private async deleteProject(projectId: string): Promise<void> {
    try {
      await this.api.call('deleteProject', [projectId], this.deadline());
    } catch (err) {
      if (!(err instanceof NeonApiError && err.status === 404)) throw err;
    }
  }

  private async createRole(s: { projectId: string; branchId: string }, role: string, deadline: number): Promise<string> {
    const r = await this.api.call('createProjectBranchRole', [s.projectId, s.branchId, { role: { name: role } }], deadline);
    if (!r.role.password) throw new ProviderError(`Neon created role ${role} in project ${s.projectId} without a password`);
    const sealed = this.seal(s.projectId, role, r.role.password);
    await this.wait(s, r.operations, deadline, `creating role ${role} in Neon project ${s.projectId}`);
    return sealed;
  }

  async start(ref: BranchRef): Promise<ComputeAddress> {
    const s = requireNeonState(ref);
    let host = s.host;
    if ((this.opts.wake ?? DEFAULT_NEON_WAKE) === 'api') {
      const deadline = this.deadline();
      let { endpoint } = await this.api.call('getProjectEndpoint', [s.projectId, s.endpointId], deadline);
      if (endpoint.current_state !== EndpointState.Active || endpoint.pending_state !== undefined) {
        const started = await this.api.call('startProjectEndpoint', [s.projectId, s.endpointId], deadline);
        await this.wait(s, started.operations, deadline, `starting Neon endpoint ${s.endpointId}`, (m) => new ComputeStartError(m));
        endpoint = started.endpoint;
      }
      host = endpoint.host;
    }
    this.running.add(ref.branchId);
    return { kind: 'tcp', host, port: this.opts.port, servername: host, ...(this.opts.ca ? { ca: this.opts.ca } : {}), passwords: this.passwordsOf(ref.branchId, s) };
  }

  /** A running endpoint's address with the passwords the catalog keeps now (a role added, a password rotated). */
  addressFor(ref: BranchRef, running: ComputeAddress): ComputeAddress {
    const s = neonStateOf(ref);
    if (running.kind !== 'tcp' || !s) return running;
    const passwords = this.passwordsOf(ref.branchId, s);
    return passwords === running.passwords ? running : { ...running, passwords };
  }

  /**
   * The role passwords of a branch, opened; opened again only when the sealed ones changed. A route
   * from memory hands the same object each time, so the common case compares no text.
   */
  private passwordsOf(branchId: string, s: NeonState): ReadonlyMap<string, string> {
    const known = this.opened.get(branchId);
    if (known?.source === s.passwords) return known.passwords;
    const sealed = JSON.stringify(s.passwords);
    if (known?.sealed === sealed) {
      known.source = s.passwords;
      return known.passwords;
    }
    const passwords = new Map<string, string>();
    for (const [role, box] of Object.entries(s.passwords)) {
      try {
        passwords.set(role, this.opts.box.open(box, passwordContext(s.projectId, role)));
      } catch (err) {
        throw new ProviderError(`the kept Neon password of role ${role} (project ${s.projectId}) cannot be opened: ${(err as Error).message}`);
      }
    }
    this.opened.set(branchId, { source: s.passwords, sealed, passwords });
    return passwords;
  }

  async stop(ref: BranchRef): Promise<void> {
    const s = neonStateOf(ref);
    this.running.delete(ref.branchId);
    this.opened.delete(ref.branchId);
    if (!s) return;
    const deadline = this.deadline();
    const r = await this.api.call('suspendProjectEndpoint', [s.projectId, s.endpointId], deadline);
    await this.wait(s, r.operations, deadline, `suspending Neon endpoint ${s.endpointId}`);
  }

  /**
   * The root branch: deletes the project with its branches, endpoints and data. Another branch:
   * deletes its Neon branch (with its endpoint), found by its name when pgfleet never kept its id
   * (a creation cut short). Either already gone is fine.
   */
  async delete(ref: BranchRef): Promise<void> {
    this.running.delete(ref.branchId);
    this.opened.delete(ref.branchId);
    if (!isChildBranch(ref)) {
      const s = neonStateOf(ref);
      if (s) await this.deleteProject(s.projectId);
      return;
    }
    const project = ref.providerState.neon as NeonState | undefined;
    if (!project) return;
    const deadline = this.deadline();
    const own = (ref.providerState.neonBranch as Partial<NeonBranchState> | undefined)?.branchId;
    const ids = own ? [own] : await this.branchesNamed(project.projectId, ref.branchId, deadline);
    for (const id of ids) {
      try {
        const r = await this.api.call('deleteProjectBranch', [{ projectId: project.projectId, branchId: id }], deadline);
        await this.wait(project, r.operations, deadline, `deleting Neon branch ${id}`);
      } catch (err) {
        if (!(err instanceof NeonApiError && err.status === 404)) throw err;
      }
    }
  }

  /** The ids of the project's Neon branches named `name` (pgfleet names each after its own branch id). */
  async branchesNamed(projectId: string, name: string, deadline: number): Promise<string[]> {
    const { branches } = await this.api.call('listProjectBranches', [{ projectId, search: name }], deadline);
    return branches.filter((b) => b.name === name).map((b) => b.id);
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
    return Object.keys(passwords).length ? neonPatch(ref, { passwords }) : {};
  }

  /** A new Neon password for the role, in effect once Neon's operations finish. */
  async resetPassword(ref: BranchRef, role: string): Promise<ProviderState> {
    const s = requireNeonState(ref);
    const deadline = this.deadline();
    const r = await this.api.call('resetProjectBranchRolePassword', [s.projectId, s.branchId, role], deadline);
    if (!r.role.password) throw new ProviderError(`Neon reset the password of role ${role} in project ${s.projectId} without returning it`);
    const sealed = this.seal(s.projectId, role, r.role.password);
    await this.wait(s, r.operations, deadline, `resetting the password of role ${role} in Neon project ${s.projectId}`);
    return neonPatch(ref, { passwords: { [role]: sealed } });
  }

  /** Hourly usage from Neon's consumption API, as pgfleet's metrics. */
  readonly meters = NEON_METERS;

  async usage(ref: BranchRef, from: Date, to: Date): Promise<MeteredUsage[]> {
    const s = neonStateOf(ref);
    return s ? consumption(this.api, { projectId: s.projectId, orgId: this.opts.region.orgId }, from, to, this.deadline()) : [];
  }

  status(ref: BranchRef): 'running' | 'stopped' {
    return this.running.has(ref.branchId) ? 'running' : 'stopped';
  }

  /**
   * The endpoint's size as Neon shows it: Neon's API has no field for the size an active endpoint
   * holds this moment, so an active endpoint counts at its floor (autoscaling_limit_min_cu), an
   * idle one 0.
   */
  async currentUnits(ref: BranchRef): Promise<number> {
    const s = requireNeonState(ref);
    const { endpoint } = await this.api.call('getProjectEndpoint', [s.projectId, s.endpointId], this.deadline());
    return endpoint.current_state === EndpointState.Active ? endpoint.autoscaling_limit_min_cu : 0;
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
