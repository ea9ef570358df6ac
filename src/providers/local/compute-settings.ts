import fs from 'node:fs';
import path from 'node:path';
import type { ComputeSettings } from '../../config.ts';
import type { OsUser } from '../../pg/os-user.ts';
import type { BranchRef } from '../provider.ts';
import { WAL_RECEIVER_NAME } from './wal-streamer.ts';

/** Compute settings a major has and older ones lack (a setting the server does not know stops it). */
const SETTINGS_FROM_MAJOR: { major: number; settings: Record<string, string | number> }[] = [
  // 18 runs 3 I/O worker processes per server by default; one serves a small compute (bench/density.ts).
  { major: 18, settings: { io_workers: 1 } },
];

/** Settings a running compute takes on a reload, in a file of its data directory that postgresql.conf includes. */
export const RUNTIME_CONF = 'pgfleet.runtime.conf';
const INCLUDE = `include_if_exists = '${RUNTIME_CONF}'`;

/** Postgres settings of a branch's compute, given on its command line (they hold until it stops). */
export function computeSettings(ref: BranchRef, c: ComputeSettings): Record<string, string | number> {
  const ofMajor = SETTINGS_FROM_MAJOR.filter((s) => ref.pgVersion >= s.major).map((s) => s.settings);
  return Object.assign({
    // The WAL goes to the store through pgfleet's receiver (replication), not an archive command.
    archive_mode: 'off',
    wal_level: 'replica',
    max_wal_senders: 2,
    max_replication_slots: 2,
    shared_buffers: c.sharedBuffers,
    max_connections: c.maxConnections,
    work_mem: c.workMem,
    maintenance_work_mem: '16MB',
    max_wal_size: '64MB',
    // Finished 1 MB segments are removed, not kept for reuse: an idle database holds little WAL.
    min_wal_size: '2MB',
    wal_recycle: 'off',
    max_worker_processes: 4,
    max_parallel_workers: 0,
    max_parallel_workers_per_gather: 0,
    autovacuum_max_workers: 1,
    jit: 'off',
    huge_pages: 'off',
    unix_socket_permissions: '0700',
    cluster_name: ref.branchId,
    log_line_prefix: '%m [%p] ',
  }, ...ofMajor);
}

/**
 * What may change while the compute runs: whether commits wait for the store (durability
 * "sync", or an async database whose WAL waits on this node's disk past its bound).
 */
export interface RuntimeSettings {
  commitsWaitForStore: boolean;
}

/** Writes the runtime settings (and the include that reads them) into a data directory; a reload applies them. */
export function writeRuntimeSettings(pgdata: string, user: OsUser, s: RuntimeSettings): void {
  const conf = path.join(pgdata, 'postgresql.conf');
  if (!fs.readFileSync(conf, 'utf8').includes(INCLUDE)) fs.appendFileSync(conf, `\n${INCLUDE}\n`);
  const file = path.join(pgdata, RUNTIME_CONF);
  const text = s.commitsWaitForStore ? `synchronous_standby_names = '${WAL_RECEIVER_NAME}'\nsynchronous_commit = on\n` : `synchronous_standby_names = ''\n`;
  fs.writeFileSync(file, text, { mode: 0o600 });
  if (user.switchUser) fs.chownSync(file, user.uid, user.gid);
}
