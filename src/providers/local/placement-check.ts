import { ComputeStartError } from '../../errors.ts';
import type { BranchRef } from '../provider.ts';
import type { LocalStorage } from './local-provider.ts';

/**
 * A node runs only the databases placed on it, and only while its place in the fleet holds: one
 * that moved (a drain, a lost node's reassignment) is another node's now, and one being moved here
 * waits until its old node let go.
 */
export async function checkPlacedHere(storage: LocalStorage, ref: BranchRef): Promise<void> {
  const { rows } = await storage.catalog.query<{ node_id: string | null; moving_from: string | null }>(
    'SELECT node_id, moving_from FROM databases WHERE id = $1', [ref.databaseId]);
  const placed = rows[0]?.node_id;
  if (placed && placed !== storage.node.id) throw new ComputeStartError(`database "${ref.databaseId}" has moved to node ${placed}; connect again`);
  if (rows[0]?.moving_from) throw new ComputeStartError(`database "${ref.databaseId}" is moving here from node ${rows[0].moving_from}; try again in a moment`);
  if (!storage.node.canWrite()) throw new ComputeStartError('this node has lost its place in the fleet (no heartbeat reached the catalog) and starts no compute until it is back');
}
