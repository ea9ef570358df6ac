import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ADMIN_ROLE } from '../../pg/server.ts';
import { parseLsn } from '../point-in-time.ts';

/**
 * Runs fn on a connection to the compute as pgfleet's admin role, over its private socket. By
 * default in template1: the tenant's database took the place of `postgres`, and a tenant's
 * CREATE DATABASE waits (up to 5 s) for these short sessions to leave its template.
 */
export async function asAdmin<T>(socketDir: string, port: number, fn: (client: pg.Client) => Promise<T>, database = 'template1'): Promise<T> {
  const client = new pg.Client({ host: socketDir, port, user: ADMIN_ROLE, database });
  // A compute stopped while the session is idle (between its queries, or while it ends) says so with a FATAL:
  // an 'error' event nobody asked for; a query under way fails on its own.
  client.on('error', () => {});
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

/** Where a branch's history ends: a commit at `time` at the latest, stored. */
export interface HistoryEnd {
  /** Taken just before the marking commit: every commit of the tenant until then is stored. */
  time: Date;
  lsn: string;
}

/**
 * Makes everything written until now restorable: a transaction commits (recovery to a time
 * needs a commit after the target to stop at), the WAL segment is switched, and `stored`
 * resolves once the store holds the WAL up to the switch.
 */
export async function markHistoryEnd(socketDir: string, port: number, stored: (lsn: bigint) => Promise<void>): Promise<HistoryEnd> {
  const mark = await asAdmin(socketDir, port, async (client) => {
    await client.query('BEGIN');
    const { rows: [m] } = await client.query<{ time: Date }>('SELECT clock_timestamp() AS time, pg_current_xact_id()');
    await client.query('COMMIT');
    const { rows: [sw] } = await client.query<{ lsn: string }>('SELECT pg_switch_wal()::text AS lsn');
    return { time: m!.time, lsn: sw!.lsn };
  });
  await stored(parseLsn(mark.lsn));
  return mark;
}

/** The cluster's system identifier, from pg_control (ControlFileData.system_identifier at offset 0): initdb draws it at random. */
export function systemIdentifier(pgdata: string): string {
  const control = fs.readFileSync(path.join(pgdata, 'global', 'pg_control'));
  return control.readBigUInt64LE(0).toString();
}
