import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PgInstall } from '../../pg/install.ts';
import { type OsUser, makeOwnedDir } from '../../pg/os-user.ts';
import { PostgresServer, SOCKET_PORT } from '../../pg/server.ts';
import { asAdmin, waitArchived } from './compute-admin.ts';
import { copyTree, stripRunFiles } from './files.ts';
import type { PointInTime } from '../point-in-time.ts';
import { restoreCommand } from './wal.ts';

/** Recovery of a big history may take long; it runs outside any connection's wait. */
export const RECOVERY_TIMEOUT_MS = 30 * 60_000;

export interface RecoveryRun {
  install: PgInstall;
  user: OsUser;
  /** Holds pgdata (a base backup) and archive (the WAL to replay). */
  dir: string;
  /** The compute's own settings (archiving into dir/archive, memory). */
  settings: Record<string, string | number>;
  /** A private socket directory for the run. */
  socketDir: string;
  /** Replays to this point; undefined = to the end of the archive. */
  target: PointInTime | undefined;
}

/**
 * Point-in-time recovery as a DBA runs it: recovery.signal, a restore_command reading the
 * branch's own archive, recovery_target_time/lsn with promotion on a new timeline. Hot standby
 * is off, so the server reports "ready" only once it has promoted; it is then stopped cleanly.
 */
export async function recoverToTarget(run: RecoveryRun): Promise<void> {
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
      restore_command: restoreCommand(path.join(run.dir, 'archive')),
      recovery_target_action: 'promote',
      recovery_target_timeline: 'latest',
      hot_standby: 'off',
    },
    startTimeoutMs: RECOVERY_TIMEOUT_MS,
  });
  try {
    await server.start();
    await server.stop('fast');
  } finally {
    fs.rmSync(run.socketDir, { recursive: true, force: true });
  }
}

/** A socket directory name for a one-off run (short: sun_path is small). */
export const oneOffSocketName = () => `rc-${crypto.randomBytes(6).toString('hex')}`;

export interface OnlineBackupResult {
  timeline: number;
  startLsn: string;
  endLsn: string;
  /** The last segment the backup needs from the archive. */
  endSegment: string;
  startTime: Date;
  endTime: Date;
}

/** Entries of a running data directory not copied into a base backup (Postgres's own list, in short). */
const SKIPPED = new Set(['pg_wal', 'postmaster.pid', 'postmaster.opts', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']);

/**
 * An online base backup with the low-level API: pg_backup_start, a copy of the data directory
 * while the compute runs, pg_backup_stop, and
 * the backup_label it returns written into the copy, once the WAL it needs is archived. Files the server removes meanwhile are
 * skipped, as pg_basebackup does.
 */
export async function onlineBackup(socketDir: string, pgdata: string, dest: string, user: OsUser): Promise<OnlineBackupResult> {
  return asAdmin(socketDir, SOCKET_PORT, async (client) => {
    const startTime = new Date();
    const { rows: [start] } = await client.query<{ lsn: string }>(`SELECT pg_backup_start('pgfleet', true)::text AS lsn`);
    try {
      makeOwnedDir(dest, user);
      for (const entry of fs.readdirSync(pgdata)) {
        if (SKIPPED.has(entry)) continue;
        await copyTree(path.join(pgdata, entry), path.join(dest, entry)).catch((err) => {
          if (!/No such file or directory/.test(String(err.stderr ?? err))) throw err;
        });
      }
      for (const dir of ['pg_wal', 'pg_wal/archive_status', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']) {
        makeOwnedDir(path.join(dest, dir), user);
      }
    } catch (err) {
      await client.query('SELECT pg_backup_stop(false)').catch(() => {});
      throw err;
    }
    const { rows: [stop] } = await client.query<{ lsn: string; labelfile: string; segment: string }>(
      'SELECT lsn::text, labelfile, pg_walfile_name(lsn) AS segment FROM pg_backup_stop(false)');
    await waitArchived(client, stop!.segment);
    const label = path.join(dest, 'backup_label');
    fs.writeFileSync(label, stop!.labelfile, { mode: 0o600 });
    if (user.switchUser) fs.chownSync(label, user.uid, user.gid);
    const timeline = Number(/START TIMELINE: (\d+)/.exec(stop!.labelfile)?.[1] ?? 1);
    return { timeline, startLsn: start!.lsn, endLsn: stop!.lsn, endSegment: stop!.segment, startTime, endTime: new Date() };
  });
}
