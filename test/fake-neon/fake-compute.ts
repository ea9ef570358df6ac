import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { PgInstall } from '../../src/pg/install.ts';
import type { OsUser } from '../../src/pg/os-user.ts';
import { ADMIN_ROLE, PostgresServer } from '../../src/pg/server.ts';
import { type HistoryEnd, markHistoryEnd } from '../../src/providers/local/compute-admin.ts';
import type { ServerCert } from './certs.ts';
import { archiveSettings, pgdataOf } from './fake-history.ts';
import { waitArchived } from './fake-archive.ts';

export interface ComputeSpec {
  databases: { name: string; owner: string }[];
  /** role → password */
  roles: Map<string, string>;
}

export interface FakeComputeOptions {
  install: PgInstall;
  user: OsUser;
  /** The branch's directory (fake-history.ts): its data, made before the first start. */
  dir: string;
  socketDir: string;
  host: string;
  port: number;
  cert: ServerCert;
}

const ident = (s: string) => pg.escapeIdentifier(s);

/**
 * A Neon compute, for real: a Postgres server listening on its own loopback address with TLS
 * (the fake CA's certificate for that address) and SCRAM passwords only, as on Neon. It archives
 * its WAL into its branch's history.
 */
export class FakeCompute {
  private server: PostgresServer | undefined;
  // Starts and config changes one at a time, as Neon runs one operation of a project at a time.
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: FakeComputeOptions) {}

  get running(): boolean {
    return this.server?.running ?? false;
  }

  private get pgdata(): string {
    return pgdataOf(this.opts.dir);
  }

  /** Access rules and this endpoint's certificate: the data may come from another branch, on another host. */
  private configure(): void {
    const own = (file: string, text: string, mode: number) => {
      fs.writeFileSync(file, text, { mode });
      if (this.opts.user.switchUser) fs.chownSync(file, this.opts.user.uid, this.opts.user.gid);
    };
    own(path.join(this.pgdata, 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\n', 0o600);
    own(path.join(this.pgdata, 'server.crt'), this.opts.cert.certPem, 0o600);
    own(path.join(this.pgdata, 'server.key'), this.opts.cert.keyPem, 0o600);
  }

  private serialized(work: () => Promise<void>): Promise<void> {
    const run = this.chain.then(work);
    this.chain = run.catch(() => {});
    return run;
  }

  /** Starts the server and makes its roles (with their passwords) and databases match spec. */
  start(spec: ComputeSpec): Promise<void> {
    return this.serialized(() => this.startNow(spec));
  }

  private async startNow(spec: ComputeSpec): Promise<void> {
    if (!this.running) {
      this.configure();
      this.server = new PostgresServer({
        install: this.opts.install, user: this.opts.user, pgdata: this.pgdata, socketDir: this.opts.socketDir,
        logFile: path.join(this.opts.dir, 'postgres.log'), startTimeoutMs: 30_000,
        settings: {
          ...archiveSettings(this.opts.dir), listen_addresses: this.opts.host, port: this.opts.port, ssl: 'on', password_encryption: 'scram-sha-256',
          shared_buffers: '16MB', max_connections: 20, max_wal_size: '64MB', min_wal_size: '4MB', jit: 'off',
        },
      });
      await this.server.start();
    }
    await this.applyNow(spec);
  }

  /** Roles and passwords as spec says (a reset password takes effect here). */
  apply(spec: ComputeSpec): Promise<void> {
    return this.serialized(() => this.applyNow(spec));
  }

  private async applyNow(spec: ComputeSpec): Promise<void> {
    if (!this.running) return;
    const c = new pg.Client({ host: this.opts.socketDir, port: this.opts.port, user: ADMIN_ROLE, database: 'postgres' });
    await c.connect();
    try {
      for (const [role, password] of spec.roles) {
        const exists = (await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount;
        await c.query(`${exists ? 'ALTER' : 'CREATE'} ROLE ${ident(role)} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
      }
      for (const db of spec.databases) {
        if (!(await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.name])).rowCount) {
          await c.query(`CREATE DATABASE ${ident(db.name)} OWNER ${ident(db.owner)}`);
        }
      }
    } finally {
      await c.end();
    }
  }

  /** Where its history ends now: a commit, and its WAL switched and archived. */
  historyEnd(): Promise<HistoryEnd> {
    return markHistoryEnd(this.opts.socketDir, this.opts.port, (lsn) => waitArchived(this.opts.socketDir, this.opts.port, lsn));
  }

  /** Stops it once everything it wrote is archived; returns where its history ends (undefined: it was not running). */
  async stop(): Promise<HistoryEnd | undefined> {
    const s = this.server;
    if (!s?.running) return undefined;
    const end = await this.historyEnd();
    this.server = undefined;
    await s.stop('fast');
    return end;
  }

  /** Stops it without archiving (the project is going). */
  async kill(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    await s?.stop('fast');
  }

  async destroy(): Promise<void> {
    await this.kill();
    fs.rmSync(this.opts.socketDir, { recursive: true, force: true });
  }
}
