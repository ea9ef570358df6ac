import { ProviderError } from '../../errors.ts';
import type { BranchRef, ProviderState } from '../provider.ts';

/**
 * What the catalog keeps of a database's Neon project (the database's provider_state.neon): the
 * project, and its root branch's Neon branch, endpoint and role passwords. A branch made from
 * another keeps its own Neon branch, endpoint and passwords (its provider_state.neonBranch), over these.
 */
export interface NeonState {
  projectId: string;
  branchId: string;
  endpointId: string;
  /** The read-write endpoint's host, as Neon last reported it. */
  host: string;
  /** role → its Neon password, sealed by SecretBox with passwordContext(). */
  passwords: Record<string, string>;
  /** The history retention last given to the project (absent: never set; Neon's default applies). */
  historyRetentionSeconds?: number;
}

/** A non-root branch's own part of the state. */
export type NeonBranchState = Pick<NeonState, 'branchId' | 'endpointId' | 'host' | 'passwords'>;

const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** A branch made from another. Refs kept as JSON before branches existed at Neon lack `root`: they are roots. */
export const isChildBranch = (ref: BranchRef): boolean => ref.root === false;

/** The Neon project and branch of a branch, or undefined when none was created (a failed create). */
export function neonStateOf(ref: BranchRef): NeonState | undefined {
  const project = ref.providerState.neon as Partial<NeonState> | undefined;
  if (project === undefined) return undefined;
  const own = ref.providerState.neonBranch as Partial<NeonBranchState> | undefined;
  if (isChildBranch(ref) && own === undefined) return undefined;
  const s = { ...project, ...own };
  if (!isString(s.projectId) || !isString(s.branchId) || !isString(s.endpointId) || !isString(s.host) || typeof s.passwords !== 'object' || s.passwords === null) {
    throw new ProviderError(`database ${ref.databaseId}: its Neon state in the catalog is incomplete`);
  }
  return s as NeonState;
}

export function requireNeonState(ref: BranchRef): NeonState {
  const s = neonStateOf(ref);
  if (!s) throw new ProviderError(`database ${ref.databaseId} has no Neon project`);
  return s;
}

/** State to merge into the kept one: the database's, or for a non-root branch its own. */
export const neonPatch = (ref: BranchRef, patch: Partial<NeonState>): ProviderState => (isChildBranch(ref) ? { neonBranch: patch } : { neon: patch });

/** Binds a sealed password to its project and role. */
export const passwordContext = (projectId: string, role: string) => `neon-role-password:${projectId}/${role}`;
