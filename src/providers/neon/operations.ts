import type { Operation } from '@neondatabase/api-client';
import { ProviderError } from '../../errors.ts';
import type { NeonApi } from './neon-api.ts';

// "error" is not final at Neon: the operation failed an attempt and will be retried.
const DONE = new Set(['finished', 'skipped']);
const FAILED = new Set(['failed', 'cancelled']);

export interface WaitOptions {
  /** Epoch ms by which every operation must have finished. */
  deadline: number;
  /** What is being done, for messages: "starting the compute". */
  what: string;
  /** The error to throw (ComputeStartError for a wake, ProviderError otherwise). */
  error?: (message: string) => Error;
  /** First poll interval; later ones grow to 1 s. */
  pollMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits for Neon operations (returned by a create, start, suspend or role change) to finish,
 * polling each one still under way. A failed operation, or one still running at the
 * deadline, ends the wait with a clear error; it never hangs.
 */
export async function waitForOperations(api: NeonApi, projectId: string, operations: Operation[], opts: WaitOptions): Promise<void> {
  const error = opts.error ?? ((m: string) => new ProviderError(m));
  const started = Date.now();
  let pending = operations;
  let interval = opts.pollMs ?? 100;
  for (;;) {
    const failed = pending.find((op) => FAILED.has(op.status));
    if (failed) {
      throw error(`${opts.what}: Neon operation ${failed.action} (${failed.id}) ${failed.status}${failed.error ? `: ${failed.error}` : ''}`);
    }
    pending = pending.filter((op) => !DONE.has(op.status));
    if (pending.length === 0) return;
    const left = opts.deadline - Date.now();
    if (left <= 0) {
      const op = pending[0]!;
      throw error(`${opts.what}: Neon operation ${op.action} (${op.id}) is still ${op.status}${op.error ? ` (${op.error})` : ''} after ${Math.round((Date.now() - started) / 1000)} s; gave up`);
    }
    await sleep(Math.min(interval, left));
    interval = Math.min(1000, interval * 1.5);
    pending = await Promise.all(pending.map(async (op) => (await api.call('getProjectOperation', [projectId, op.id], opts.deadline)).operation));
  }
}
