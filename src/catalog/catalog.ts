import pg from 'pg';
import type { Logger } from 'pino';
import type { PgInstalls } from '../pg/install.ts';
import { type OsUser, currentUser, giveTree } from '../pg/os-user.ts';
import { ADMIN_ROLE, PostgresServer } from '../pg/server.ts';
import { initCluster } from '../pg/server.ts';
import fs from 'node:fs';
import path from 'node:path';
import { migrate } from './migrate.ts';
import type { PreparedStatement } from './prepared.ts';

// Catalog rows carry bigint counters; they fit in a JS number for any realistic usage.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** The catalog: a pool on its Postgres, and, on the embedded default, that Postgres itself. */
export class Catalog {
  private constructor(
    readonly pool: pg.Pool,
    private readonly server: PostgresServer | undefined,
    private readonly state: { closing: boolean },
    /** How another process of this gateway (a proxy worker) reaches the same catalog. */
    readonly url: string,
  ) {}

  /** A pool on a catalog another process of this gateway opened (and migrated). */
  static async connect(url: string, max: number, log: Logger): Promise<Catalog> {
    const pool = new pg.Pool({ connectionString: url, max, idleTimeoutMillis: 30_000 });
    const state = { closing: false };
    pool.on('connect', (client) => client.on('error', (err) => {
      if (!state.closing) log.warn({ err: err.message }, 'catalog connection error');
    }));
    pool.on('error', () => {});
    return new Catalog(pool, undefined, state, url);
  }

  /**
   * Connects to DATABASE_URL, or starts the embedded catalog Postgres under dataDir/catalog,
   * then applies pending migrations.
   */
  static async open(opts: {
    databaseUrl: string | undefined;
    dataDir: string;
    runDir: string;
    installs: PgInstalls;
    user: OsUser;
    log: Logger;
  }): Promise<Catalog> {
    let server: PostgresServer | undefined;
    let poolConfig: pg.PoolConfig;
    if (opts.databaseUrl) {
      poolConfig = { connectionString: opts.databaseUrl };
    } else {
      const pgdata = path.join(opts.dataDir, 'catalog', 'pgdata');
      const versionFile = path.join(pgdata, 'PG_VERSION');
      // The catalog stays on the major it was made with, whatever the computes' default becomes.
      const made = fs.existsSync(versionFile) ? Number(fs.readFileSync(versionFile, 'utf8')) : undefined;
      if (made !== undefined && !opts.installs.has(made)) {
        throw new Error(`the embedded catalog (${pgdata}) is Postgres ${made}, whose binaries are not installed (installed: ${opts.installs.majors.join(', ')})`);
      }
      const install = opts.installs.get(made);
      if (made === undefined) {
        opts.log.info({ pgdata, version: install.version }, 'initializing the embedded catalog');
        await initCluster(install, opts.user, pgdata);
      }
      // A catalog made by an earlier pgfleet as the shared compute user becomes the catalog user's.
      giveTree(path.dirname(pgdata), opts.user);
      const socketDir = path.join(opts.runDir, 'catalog');
      server = new PostgresServer({
        install,
        user: opts.user,
        pgdata,
        socketDir,
        logFile: path.join(opts.dataDir, 'catalog', 'postgres.log'),
        settings: { shared_buffers: '32MB', max_connections: 100, unix_socket_permissions: '0700', fsync: 'on' },
        peerOnly: currentUser().name,
        startTimeoutMs: 60_000,
      });
      await server.start();
      server.on('exit', (code, signal) => opts.log.fatal({ code, signal }, 'the embedded catalog Postgres exited'));
      poolConfig = { host: socketDir, user: ADMIN_ROLE, database: 'postgres' };
    }
    const pool = new pg.Pool({ ...poolConfig, max: 10, idleTimeoutMillis: 30_000 });
    const state = { closing: false };
    // pool.end() resolves before its clients' sockets close, so a client may still hear the catalog
    // shut down; every client keeps a listener, not only idle ones, so that is never an uncaught error
    // (and, while pgfleet stops on purpose, no warning either).
    pool.on('connect', (client) => client.on('error', (err) => {
      if (!state.closing) opts.log.warn({ err: err.message }, 'catalog connection error');
    }));
    pool.on('error', () => {}); // an idle client's error, already logged by the listener above
    try {
      const applied = await migrate(pool);
      if (applied.length) opts.log.info({ applied }, 'catalog migrations applied');
    } catch (err) {
      await pool.end();
      await server?.stop();
      throw err;
    }
    const url = opts.databaseUrl ?? `postgresql://${ADMIN_ROLE}@/postgres?host=${encodeURIComponent(path.join(opts.runDir, 'catalog'))}`;
    return new Catalog(pool, server, state, url);
  }

  query<R extends pg.QueryResultRow = any>(statement: string | PreparedStatement, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return typeof statement === 'string' ? this.pool.query<R>(statement, values) : this.pool.query<R>({ ...statement, values });
  }

  /** Runs fn in one transaction. */
  async tx<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async ping(): Promise<boolean> {
    try {
      await this.pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.state.closing = true;
    await this.pool.end();
    await this.server?.stop();
  }
}
