import { ProviderError } from '../../errors.ts';
import type { BranchRef, ProviderState } from '../provider.ts';

/** What the catalog keeps of a database's Neon project (under provider_state.neon). */
export interface NeonState {
  projectId: string;
  branchId: string;
  endpointId: string;
  /** The read-write endpoint's host, as Neon last reported it. */
  host: string;
  /** role → its Neon password, sealed by SecretBox with passwordContext(). */
  passwords: Record<string, string>;
}

const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** The Neon project of a branch, or undefined when none was created (a failed create). */
export function neonStateOf(ref: BranchRef): NeonState | undefined {
  const s = ref.providerState.neon as Partial<NeonState> | undefined;
  if (s === undefined) return undefined;
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

/** State to merge into the kept one. */
export const neonPatch = (patch: Partial<NeonState>): ProviderState => ({ neon: patch });

/** Binds a sealed password to its project and role. */
export const passwordContext = (projectId: string, role: string) => `neon-role-password:${projectId}/${role}`;
