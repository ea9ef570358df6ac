import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PgInstall } from '../../pg/install.ts';
import type { OsUser } from '../../pg/os-user.ts';
import { PostgresServer, SOCKET_PORT } from '../../pg/server.ts';
import { asAdmin } from './compute-admin.ts';
import { stripRunFiles } from './files.ts';
import type { PointInTime } from '../point-in-time.ts';

/** Recovery of a big history may take long; it runs outside any connection's wait. */
export const RECOVERY_TIMEOUT_MS = 30 * 60_000;

export interface RecoveryRun {
  install: PgInstall;
  user: OsUser;
  /** Holds pgdata (a base backup); the run's log goes beside it. */
  dir: string;
  /** The WAL to replay: segment and history files, as Postgres names them (gzip-compressed or plain). */
  walDir: string;
  /** The compute's own settings (archiving into dir/archive, memory). */
  settings: Record<string, string | number>;
  /** A private socket directory for the run. */
  socketDir: string;
  /** Replays to this point; undefined = to the end of the WAL there is. */
  target: PointInTime | undefined;
  /** The timeline to follow; undefined = the newest one whose history file is there. */
  timeline?: number;
  /** walDir is still being filled: replay waits for each file until WAL_FETCHED is written. */
  whileFetching?: boolean;
}

/**
 * A replay is a one-off run, not the tenant's compute: it gets the room a DBA's recovery has, so that
 * pages stay in shared buffers and no restartpoint writes them out every max_wal_size of WAL (with a
 * small compute's settings, replaying 100 MB of full-page images took ten times as long).
 */
const REPLAY_SETTINGS = { shared_buffers: '128MB', max_wal_size: '1GB', checkpoint_timeout: '1h' };

/**
 * Point-in-time recovery as a DBA runs it: recovery.signal, a restore_command reading the
 * WAL fetched for the run, recovery_target_time/lsn with promotion on a new timeline. Hot standby
 * is off, so the server reports "ready" only once it has promoted; it is then stopped cleanly.
 */
export async function recoverToTarget(run: RecoveryRun): Promise<{ lastCommit: Date | null }> {
  const pgdata = path.join(run.dir, 'pgdata');
  stripRunFiles(pgdata);
  const signal = path.join(pgdata, 'recovery.signal');
  fs.writeFileSync(signal, '');
  if (run.user.switchUser) fs.chownSync(signal, run.user.uid, run.user.gid);
  const target: Record<string, string> = {};
  // A numeric offset: zone abbreviations (Z) are not loaded yet when the postmaster checks its settings.
  if (run.target && 'time' in run.target) target.recovery_target_time = run.target.time.toISOString().replace('T', ' ').replace('Z', '+00');
  if (run.target && 'lsn' in run.target) target.recovery_target_lsn = run.target.lsn;
  const server = new PostgresServer({
    install: run.install,
    user: run.user,
    pgdata,
    socketDir: run.socketDir,
    logFile: path.join(run.dir, 'recovery.log'),
    settings: {
      ...run.settings,
      ...target,
      restore_command: restoreCommand(run.walDir, { whileFetching: run.whileFetching }),
      recovery_target_action: 'promote',
      recovery_target_timeline: run.timeline === undefined ? 'latest' : String(run.timeline),
      hot_standby: 'off',
      ...REPLAY_SETTINGS,
    },
    startTimeoutMs: RECOVERY_TIMEOUT_MS,
  });
  try {
    await server.start();
    // The moment the data now stands at: the last transaction replayed.
    const lastCommit = await asAdmin(run.socketDir, SOCKET_PORT, async (c) => (await c.query('SELECT pg_last_xact_replay_timestamp() AS t')).rows[0].t as Date | null)
      .catch(() => null);
    await server.stop('fast');
    return { lastCommit };
  } finally {
    fs.rmSync(run.socketDir, { recursive: true, force: true });
  }
}

/** A socket directory name for a one-off run (short: sun_path is small). */
export const oneOffSocketName = () => `rc-${crypto.randomBytes(6).toString('hex')}`;

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Written into a WAL directory once everything the recovery needs is in it (or fetching failed). */
export const WAL_FETCHED = '.fetched';

/**
 * Fetches a segment or history file for recovery from a directory (a missing one ends recovery).
 * `-f` passes plain files through as they are. `whileFetching`: the directory is still being filled
 * (files appear whole, by rename), so a file not there yet is waited for until WAL_FETCHED is.
 */
export function restoreCommand(walDir: string, opts: { whileFetching?: boolean } = {}): string {
  const dir = quote(walDir);
  const wait = opts.whileFetching ? `while [ ! -f ${dir}/%f ] && [ ! -f ${dir}/${WAL_FETCHED} ]; do sleep 0.01; done; ` : '';
  return `${wait}[ -f ${dir}/%f ] && gzip -dcf ${dir}/%f > %p`;
}
