import { ComputeStartError } from '../../errors.ts';
import type { BranchRef } from '../provider.ts';
import type { LocalStorage } from './local-storage.ts';

/** How long a start waits for the old node to let go of a database moving here (a suspend and an upload of its last WAL). */
const MOVE_WAIT_MS = 30_000;
const MOVE_POLL_MS = 100;

/**
 * A node runs only the databases placed on it, and only while its place in the fleet holds: one
 * that moved (a drain, a lost node's reassignment) is another node's now, and one being moved here
 * waits until its old node let go (the start waits, so a client connecting meanwhile only waits too).
 */
export async function checkPlacedHere(storage: LocalStorage, ref: BranchRef): Promise<void> {
  for (const deadline = Date.now() + MOVE_WAIT_MS; ;) {
    const { rows } = await storage.catalog.query<{ node_id: string | null; moving_from: string | null }>(
      'SELECT node_id, moving_from FROM databases WHERE id = $1', [ref.databaseId]);
    const placed = rows[0]?.node_id;
    if (placed && placed !== storage.node.id) throw new ComputeStartError(`database "${ref.databaseId}" has moved to node ${placed}; connect again`);
    if (!rows[0]?.moving_from) break;
    if (Date.now() > deadline) throw new ComputeStartError(`database "${ref.databaseId}" is still moving here from node ${rows[0].moving_from}; try again in a moment`);
    await new Promise((r) => setTimeout(r, MOVE_POLL_MS));
  }
  if (!storage.node.canWrite()) throw new ComputeStartError('this node has lost its place in the fleet (no heartbeat reached the catalog) and starts no compute until it is back');
}
