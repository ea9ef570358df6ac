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

const MB = (n: number) => `${Math.max(1, Math.round(n))}MB`;
const parseMb = (v: string) => {
  const m = /^(\d+)(kB|MB|GB)$/.exec(v);
  return m ? Number(m[1]) * (m[2] === 'kB' ? 1 / 1024 : m[2] === 'GB' ? 1024 : 1) : 4;
};

/**
 * Settings that follow a compute's size (`cu`) and change with a reload, written to the runtime
 * settings file (never on the command line, which outranks every file): memory per sort and hash,
 * what the planner assumes is cached, parallel workers (a query gets more than one CPU from 2 CU).
 */
export function sizedSettings(cu: number, c: ComputeSettings): Record<string, string | number> {
  const workers = Math.max(0, Math.floor(cu) - 1);
  return {
    work_mem: MB(Math.max(parseMb(c.workMem), 16 * cu)),
    maintenance_work_mem: MB(Math.max(16, 64 * cu)),
    effective_cache_size: MB(cu * 3072),
    max_parallel_workers_per_gather: Math.min(workers, 4),
    max_parallel_workers: workers,
  };
}

/** Background workers a compute can ever run: set at start (a restart-only setting) from its ceiling. */
const workerProcesses = (ceilingCu: number) => 4 + Math.max(0, Math.floor(ceilingCu) - 1);

/**
 * Postgres settings of a branch's compute, given on its command line (they hold until it stops);
 * those that need a restart and depend on the size are set from its ceiling.
 */
export function computeSettings(ref: BranchRef, c: ComputeSettings, ceilingCu = c.autoscaling.maxCu): Record<string, string | number> {
  const ofMajor = SETTINGS_FROM_MAJOR.filter((s) => ref.pgVersion >= s.major).map((s) => s.settings);
  return Object.assign({
    // The WAL goes to the store through pgfleet's receiver (replication), not an archive command.
    archive_mode: 'off',
    wal_level: 'replica',
    max_wal_senders: 2,
    max_replication_slots: 2,
    shared_buffers: c.sharedBuffers,
    max_connections: c.maxConnections,
    max_wal_size: '64MB',
    // Finished 1 MB segments are removed, not kept for reuse: an idle database holds little WAL.
    min_wal_size: '2MB',
    wal_recycle: 'off',
    max_worker_processes: workerProcesses(ceilingCu),
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
  /** The settings of its size now (sizedSettings). */
  sized: Record<string, string | number>;
}

const quoted = (v: string | number) => (typeof v === 'number' ? String(v) : `'${v}'`);

/** Writes the runtime settings (and the include that reads them) into a data directory; a reload applies them. */
export function writeRuntimeSettings(pgdata: string, user: OsUser, s: RuntimeSettings): void {
  const conf = path.join(pgdata, 'postgresql.conf');
  if (!fs.readFileSync(conf, 'utf8').includes(INCLUDE)) fs.appendFileSync(conf, `\n${INCLUDE}\n`);
  const file = path.join(pgdata, RUNTIME_CONF);
  const text = (s.commitsWaitForStore ? `synchronous_standby_names = '${WAL_RECEIVER_NAME}'\nsynchronous_commit = on\n` : `synchronous_standby_names = ''\n`)
    + Object.entries(s.sized).map(([k, v]) => `${k} = ${quoted(v)}\n`).join('');
  fs.writeFileSync(file, text, { mode: 0o600 });
  if (user.switchUser) fs.chownSync(file, user.uid, user.gid);
}
