/** A plain Postgres cluster driven the way people script it (initdb, pg_ctl): the baseline benches compare with. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { PgInstall } from '../src/pg/install.ts';
import { type OsUser, makeOwnedDir, spawnIdentity } from '../src/pg/os-user.ts';

const execFileAsync = promisify(execFile);

export class PlainPostgres {
  private readonly asUser: ReturnType<typeof spawnIdentity> & { env: NodeJS.ProcessEnv };

  constructor(private readonly install: PgInstall, user: OsUser, readonly pgdata: string) {
    makeOwnedDir(path.dirname(pgdata), user);
    this.asUser = { ...spawnIdentity(user), env: { LC_ALL: 'C', PATH: process.env.PATH } };
  }

  private run(program: string, args: string[]): Promise<unknown> {
    return execFileAsync(path.join(this.install.binDir, program), args, this.asUser);
  }

  /** `walSegmentMb`: the computes' 1 MB segments where a comparison needs the same WAL settings. */
  initdb(walSegmentMb?: number): Promise<unknown> {
    const segments = walSegmentMb ? [`--wal-segsize=${walSegmentMb}`] : [];
    return this.run('initdb', ['-D', this.pgdata, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions', ...segments]);
  }

  /** pg_ctl start -w on a private socket (no TCP), with extra settings. */
  start(settings: Record<string, string | number> = {}): Promise<unknown> {
    const options = [`-k ${this.pgdata}`, `-c listen_addresses=''`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)];
    return this.run('pg_ctl', ['start', '-w', '-D', this.pgdata, '-l', path.join(this.pgdata, 'log'), '-o', options.join(' ')]);
  }

  /**
   * Waits until the server takes connections. `pg_ctl start -w` returns once a recovering server
   * reaches a consistent state, before it has replayed to its target and promoted: a recovery's
   * baseline needs this wait too.
   */
  async untilAcceptingConnections(user: string, timeoutMs = 600_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await execFileAsync('psql', ['-X', '-At', '-h', this.pgdata, '-U', user, '-d', 'template1', '-c', 'SELECT 1'], this.asUser);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  stop(): Promise<unknown> {
    return this.run('pg_ctl', ['stop', '-m', 'fast', '-w', '-D', this.pgdata]);
  }

  /** psql -c sql, as the postgres role over the socket. */
  psql(sql: string): Promise<unknown> {
    return execFileAsync('psql', ['-X', '-h', this.pgdata, '-U', 'postgres', '-d', 'postgres', '-c', sql], this.asUser);
  }
}
