import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { SOCKET_PORT } from '../../pg/server.ts';

// sun_path holds 108 bytes; leave room for the lock file's name.
const MAX_SOCKET_PATH = 100;
const MAX_ID_LENGTH = 40;

/**
 * The directory for Unix sockets: <dataDir>/run when its paths fit in sun_path, else a
 * short directory in the system temp dir derived from the data dir.
 */
export function chooseRunDir(dataDir: string): string {
  const preferred = path.join(dataDir, 'run');
  const longest = path.join(preferred, 'x'.repeat(MAX_ID_LENGTH), `.s.PGSQL.${SOCKET_PORT}.lock`);
  if (longest.length <= MAX_SOCKET_PATH) return preferred;
  const hash = crypto.createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
  return path.join(os.tmpdir(), `pgfleet-${hash}`);
}

/** Where one branch's files live: <dataDir>/data/<region>/<database>/<branch>. */
export class LocalLayout {
  constructor(readonly dataDir: string, readonly runDir: string) {}

  get dataRoot(): string {
    return path.join(this.dataDir, 'data');
  }

  templateDir(pgVersion: string): string {
    return path.join(this.dataDir, 'templates', `pg${pgVersion}`);
  }

  databaseDir(region: string, databaseId: string): string {
    return path.join(this.dataRoot, region, databaseId);
  }

  branchDir(region: string, databaseId: string, branchId: string): string {
    return path.join(this.databaseDir(region, databaseId), branchId);
  }

  socketDir(branchId: string): string {
    if (branchId.length > MAX_ID_LENGTH) throw new Error(`branch id too long for a socket path: ${branchId}`);
    return path.join(this.runDir, branchId);
  }
}
