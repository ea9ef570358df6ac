import type { ComputeManager } from '../computes.ts';
import type { SuspendCause, WakeCause } from '../compute-target.ts';
import type { Events } from './events.ts';

/**
 * database.woken, database.suspended and database.wake_failed from the compute manager of the
 * node that runs the compute (so each happens once in a fleet), recorded right after the change.
 * A compute stopped because its database is being deleted tells nothing: database.deleted does.
 */
export function recordComputeEvents(computes: ComputeManager, events: Events): void {
  const owner = (branchId: string) => {
    const target = computes.targetOf(branchId);
    return target && { partnerId: target.partnerId, databaseId: target.ref.databaseId, branch: { branch_id: branchId, root: target.ref.root } };
  };
  computes.on('woken', (branchId: string, w: { ms: number; cause: WakeCause }) => {
    const o = owner(branchId);
    if (o) void events.recordAfter({ type: 'database.woken', partnerId: o.partnerId, databaseId: o.databaseId, data: { ...o.branch, cause: w.cause, duration_ms: w.ms } });
  });
  computes.on('suspended', (branchId: string, s: { cause: SuspendCause; ranMs: number }) => {
    const o = owner(branchId);
    if (o && s.cause !== 'deleted') {
      void events.recordAfter({ type: 'database.suspended', partnerId: o.partnerId, databaseId: o.databaseId, data: { ...o.branch, cause: s.cause, ran_ms: s.ranMs } });
    }
  });
  computes.on('wake', (branchId: string, ms: number, ok: boolean, error?: string) => {
    const o = owner(branchId);
    if (o && !ok) void events.recordAfter({ type: 'database.wake_failed', partnerId: o.partnerId, databaseId: o.databaseId, data: { ...o.branch, duration_ms: ms, error } });
  });
}
