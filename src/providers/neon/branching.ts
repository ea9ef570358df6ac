import { EndpointType } from '@neondatabase/api-client';
import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog.ts';
import { branchRefOf, routeByBranch } from '../../catalog/routes.ts';
import { ProviderError } from '../../errors.ts';
import { NeonApiError, type NeonResult } from './neon-api.ts';
import { NEON_MAX_RETENTION_SECONDS, type NeonProvider, neonComputeSize } from './neon-provider.ts';
import { neonSuspendTimeout } from './neon-settings.ts';
import { type NeonBranchState, type NeonState, neonPatch, requireNeonState } from './neon-state.ts';
import type { BranchRef, ProviderState } from '../provider.ts';
import type { Branching, CommitStep } from '../provider.ts';
import type { PointInTime } from '../point-in-time.ts';

/** Neon's default history retention, for a project pgfleet has not set one on yet. */
const NEON_DEFAULT_RETENTION_SECONDS = 86_400;

const parentPoint = (at: PointInTime | undefined) => (at === undefined ? {} : 'time' in at ? { parent_timestamp: at.time.toISOString() } : { parent_lsn: at.lsn });
const sourcePoint = (at: PointInTime) => ('time' in at ? { source_timestamp: at.time.toISOString() } : { source_lsn: at.lsn });

/** `br-…_reset_20251123T201500123Z`: the name a reset keeps a branch's children under at Neon. */
const resetName = (branchId: string) => `${branchId}_reset_${new Date().toISOString().replace(/[-:.]/g, '')}`;

/**
 * History, branches and point-in-time restore on a neon region, with Neon's own branching: a
 * pgfleet branch is a Neon branch of the database's project (named after the pgfleet branch id,
 * so that one made by a call whose answer was lost is found again) with a read-write endpoint of
 * its own; a restore is Neon's branch restore, keeping the state before under the name of the
 * new pgfleet branch; history is the project's history_retention_seconds, kept in step by upkeep.
 */
export class NeonBranching implements Branching {
  /** Neon refuses to delete a branch that has children. */
  readonly deletesBranchesWithChildren = false;

  constructor(
    private readonly neon: NeonProvider,
    /** The pgfleet region this provider serves. */
    private readonly region: string,
    private readonly catalog: Catalog,
    private readonly log: Logger,
  ) {}

  async earliest(ref: BranchRef, retentionSeconds: number): Promise<Date | undefined> {
    if (retentionSeconds === 0) return undefined;
    const s = requireNeonState(ref);
    const kept = Math.min(retentionSeconds, s.historyRetentionSeconds ?? NEON_DEFAULT_RETENTION_SECONDS);
    if (kept === 0) return undefined;
    // A branch's history at Neon starts when it was made.
    const { rows } = await this.catalog.query<{ created_at: Date }>('SELECT created_at FROM branches WHERE id = $1', [ref.branchId]);
    return new Date(Math.max(Date.now() - kept * 1000, rows[0]?.created_at.getTime() ?? Date.now()));
  }

  /** A Neon branch of source's, now or at `at`, with a read-write endpoint and the database's roles. */
  async branch(source: BranchRef, child: BranchRef, at: PointInTime | undefined): Promise<ProviderState> {
    const s = requireNeonState(source);
    const deadline = this.neon.deadline();
    let created: NeonResult<'createProjectBranch'>;
    try {
      created = await this.neon.api.call('createProjectBranch', [s.projectId, {
        branch: { parent_id: s.branchId, name: child.branchId, ...parentPoint(at) },
        endpoints: [{ type: EndpointType.ReadWrite, suspend_timeout_seconds: neonSuspendTimeout(child.suspendTimeoutSeconds), ...neonComputeSize(child) }],
      }], { deadline, retryAmbiguous: false });
    } catch (err) {
      // No clear answer: Neon may have made it. Asking again would make a second one; look it up instead.
      if (!(err instanceof NeonApiError && err.ambiguous)) throw err;
      const own = await this.adopt(child, s, deadline);
      if (!own) throw err;
      return neonPatch(child, own);
    }
    try {
      await this.neon.wait(s, created.operations, deadline, `creating Neon branch ${created.branch.id}`);
      const endpoint = created.endpoints.find((e) => e.type === EndpointType.ReadWrite);
      if (!endpoint) throw new ProviderError(`Neon made branch ${created.branch.id} without a read-write endpoint`);
      return neonPatch(child, await this.ownState(s.projectId, created.branch.id, endpoint, child, deadline));
    } catch (err) {
      await this.neon.delete({ ...child, providerState: { neon: s, neonBranch: { branchId: created.branch.id } } })
        .catch((e: Error) => this.log.error({ branch: created.branch.id, err: e.message }, 'could not delete the Neon branch of a failed branch'));
      throw err;
    }
  }

  /** A Neon branch's own part of the state: its endpoint, and the password of each of the database's roles there. */
  private async ownState(projectId: string, branchId: string, endpoint: { id: string; host: string }, ref: BranchRef, deadline: number): Promise<NeonBranchState> {
    const passwords = await this.neon.rolePasswords({ projectId, branchId }, ref.roles, deadline);
    return { branchId, endpointId: endpoint.id, host: endpoint.host, passwords };
  }

  /**
   * The Neon branch named after `ref` (made by a call pgfleet did not see the end of), with a
   * read-write endpoint (made when it has none); undefined when Neon has no such branch.
   */
  private async adopt(ref: BranchRef, project: NeonState, deadline: number): Promise<NeonBranchState | undefined> {
    const [branchId] = await this.neon.branchesNamed(project.projectId, ref.branchId, deadline);
    if (!branchId) return undefined;
    const { endpoints } = await this.neon.api.call('listProjectEndpoints', [project.projectId], deadline);
    let endpoint = endpoints.find((e) => e.branch_id === branchId && e.type === EndpointType.ReadWrite);
    if (!endpoint) {
      const made = await this.neon.api.call('createProjectEndpoint', [project.projectId, {
        endpoint: { branch_id: branchId, type: EndpointType.ReadWrite, suspend_timeout_seconds: neonSuspendTimeout(ref.suspendTimeoutSeconds), ...neonComputeSize(ref) },
      }], deadline);
      await this.neon.wait(project, made.operations, deadline, `creating an endpoint for Neon branch ${branchId}`);
      endpoint = made.endpoint;
    }
    return this.ownState(project.projectId, branchId, endpoint, ref, deadline);
  }

  /**
   * Neon's restore of the branch to `at` of its own history; what it held until now is kept at
   * Neon under before's name and becomes `before`'s, with an endpoint. The branch's children move
   * there, at Neon and in the catalog (they descend from that history, not from the restored one).
   */
  async restore(ref: BranchRef, at: PointInTime, before: BranchRef, commit: CommitStep): Promise<void> {
    const s = requireNeonState(ref);
    const deadline = this.neon.deadline();
    const r = await this.neon.api.call('restoreProjectBranch', [s.projectId, s.branchId, {
      source_branch_id: s.branchId, ...sourcePoint(at), preserve_under_name: before.branchId,
    }], deadline);
    await this.neon.wait(s, r.operations, deadline, `restoring Neon branch ${s.branchId}`);
    const kept = await this.adopt(before, s, deadline);
    if (!kept) throw new ProviderError(`Neon restored branch ${s.branchId} but kept no branch named ${before.branchId}`);
    await this.catalog.tx(async (tx) => {
      // Neon moved the branch's children to the branch it kept: so does the catalog.
      await tx.query('UPDATE branches SET parent_id = $2 WHERE parent_id = $1 AND id <> $2', [ref.branchId, before.branchId]);
      await commit(tx, neonPatch(before, kept));
    });
  }

  /**
   * Neon's restore of the branch from its parent's head. Neon keeps a branch with children under
   * another name when it restores it (the children move there): that Neon branch stays, named
   * `<branch id>_reset_<time>`, until the database goes.
   */
  async reset(ref: BranchRef, parent: BranchRef, _parentRunning: boolean, commit: CommitStep): Promise<void> {
    const s = requireNeonState(ref);
    const deadline = this.neon.deadline();
    const { rows } = await this.catalog.query('SELECT 1 FROM branches WHERE parent_id = $1 LIMIT 1', [ref.branchId]);
    const r = await this.neon.api.call('restoreProjectBranch', [s.projectId, s.branchId, {
      source_branch_id: requireNeonState(parent).branchId, ...(rows.length ? { preserve_under_name: resetName(ref.branchId) } : {}),
    }], deadline);
    await this.neon.wait(s, r.operations, deadline, `resetting Neon branch ${s.branchId}`);
    await this.catalog.tx((tx) => commit(tx));
  }

  /** Neon prunes history itself; upkeep gives the project the database's retention when it changed. */
  async prune(ref: BranchRef, retentionSeconds: number): Promise<void> {
    if (!ref.root) return;
    const s = requireNeonState(ref);
    if (s.historyRetentionSeconds === Math.min(retentionSeconds, NEON_MAX_RETENTION_SECONDS)) return;
    const kept = await this.neon.setHistoryRetention(ref, retentionSeconds);
    await this.catalog.query(`UPDATE databases SET provider_state = jsonb_set(provider_state, '{neon,historyRetentionSeconds}', to_jsonb($2::int)) WHERE id = $1`,
      [ref.databaseId, kept]);
  }

  /** Neon keeps its own base images. */
  async backupIfDue(): Promise<void> {}

  /**
   * Branches of this region left 'creating' by a crash: one Neon has (its create or the restore
   * that keeps it went through) is finished, endpoint and passwords, and becomes 'ready'; the
   * others are left for Branches to remove.
   */
  async recoverInterrupted(): Promise<void> {
    const { rows } = await this.catalog.query<{ id: string }>(
      `SELECT b.id FROM branches b JOIN databases d ON d.id = b.database_id WHERE b.state = 'creating' AND d.region = $1`, [this.region]);
    for (const { id } of rows) {
      const route = await routeByBranch(this.catalog, id);
      if (!route) continue;
      const ref = branchRefOf(route);
      try {
        const project = requireNeonState({ ...ref, root: true });
        const own = await this.adopt(ref, project, this.neon.deadline());
        if (!own) continue;
        await this.catalog.query(`UPDATE branches SET state = 'ready', provider_state = $2 WHERE id = $1`, [id, neonPatch(ref, own)]);
        this.log.warn({ branch: id, database: route.databaseId }, 'finished a branch whose creation was interrupted: Neon had made it');
      } catch (err) {
        this.log.error({ branch: id, err: String(err) }, 'could not look up at Neon a branch whose creation was interrupted');
      }
    }
  }
}
