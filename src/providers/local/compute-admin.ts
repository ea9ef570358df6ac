import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ADMIN_ROLE } from '../../pg/server.ts';

/**
 * Runs fn on a connection to the compute as pgfleet's admin role, over its private socket. By
 * default in template1: the tenant's database took the place of `postgres`, and a tenant's
 * CREATE DATABASE waits (up to 5 s) for these short sessions to leave its template.
 */
export async function asAdmin<T>(socketDir: string, port: number, fn: (client: pg.Client) => Promise<T>, database = 'template1'): Promise<T> {
  const client = new pg.Client({ host: socketDir, port, user: ADMIN_ROLE, database });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The compute's WAL insert position in bytes: it only grows, so differences are WAL written. */
export function walPosition(socketDir: string, port: number): Promise<number> {
  return asAdmin(socketDir, port, async (client) => {
    const { rows } = await client.query<{ lsn: string }>(`SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS lsn`);
    return Number(rows[0]!.lsn);
  });
}

/**
 * The WAL position of the last checkpoint, from pg_control (ControlFileData.checkPoint, a
 * little-endian XLogRecPtr at offset 32). For a cleanly stopped cluster that is where its WAL ends.
 */
export function checkpointPosition(pgdata: string): number {
  const control = fs.readFileSync(path.join(pgdata, 'global', 'pg_control'));
  return Number(control.readBigUInt64LE(32));
}

/** The timeline of the last checkpoint, from pg_control (checkPointCopy.ThisTimeLineID at offset 48). */
export function checkpointTimeline(pgdata: string): number {
  const control = fs.readFileSync(path.join(pgdata, 'global', 'pg_control'));
  return control.readUInt32LE(48);
}

/** Where a branch's history ends: a commit at `time` at the latest, in an archived segment. */
export interface HistoryEnd {
  /** Taken just before the marking commit: every commit of the tenant until then is archived. */
  time: Date;
  lsn: string;
}

/**
 * Makes everything written until now restorable: a transaction commits (recovery to a time
 * needs a commit after the target to stop at), the WAL segment is switched and its archiving
 * is awaited.
 */
export async function markHistoryEnd(socketDir: string, port: number, timeoutMs = 60_000): Promise<HistoryEnd> {
  return asAdmin(socketDir, port, async (client) => {
    await client.query('BEGIN');
    const { rows: [mark] } = await client.query<{ time: Date }>('SELECT clock_timestamp() AS time, pg_current_xact_id()');
    await client.query('COMMIT');
    const { rows: [sw] } = await client.query<{ segment: string; lsn: string }>(
      'SELECT pg_walfile_name(pg_switch_wal()) AS segment, pg_current_wal_lsn()::text AS lsn');
    await waitArchived(client, sw!.segment, timeoutMs);
    return { time: mark!.time, lsn: sw!.lsn };
  });
}

/** Waits until the archiver has archived `segment` (polled: pg_backup_stop's own wait sleeps a whole second). */
export async function waitArchived(client: pg.ClientBase, segment: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows: [a] } = await client.query<{ last: string | null; failed: string | null }>(
      'SELECT last_archived_wal AS last, last_failed_wal AS failed FROM pg_stat_archiver');
    if (a!.last && a!.last.slice(8) >= segment.slice(8)) return;
    if (Date.now() > deadline) throw new Error(`WAL segment ${segment} was not archived within ${timeoutMs / 1000} s (last failed: ${a!.failed})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
