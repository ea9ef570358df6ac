import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ADMIN_ROLE } from '../../pg/server.ts';

/** Runs fn on a connection to the compute as pgfleet's admin role, over its private socket. */
export async function asAdmin<T>(socketDir: string, port: number, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: socketDir, port, user: ADMIN_ROLE, database: 'postgres' });
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
