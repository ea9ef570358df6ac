import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';
import { connectionInfo } from '../src/connection-uri.ts';
import type { DatabaseRecord } from '../src/database-records.ts';
import { type Core, startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { type Proxy, type ProxyOptions, startProxy } from '../proxy/server.ts';
import { testConfig } from './helpers.ts';

export const execFileAsync = promisify(execFile);

/** A TCP port free right now on 127.0.0.1 (for servers that cannot listen on port 0 and say which). */
export async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface TenantDb {
  database: DatabaseRecord;
  password: string;
  endpointId: string;
  role: string;
  /** What the API hands out: the options form on host localhost, with the local CA as sslrootcert */
  uri: string;
  /** options=endpoint%3D… form (host localhost); the same URI */
  uriNoSni: string;
  /** Through the transaction pooler: SNI form (host ep-…-pooler.db.localhost) and options form; the first is what the API hands out. */
  pooledUri: string;
  pooledUriNoSni: string;
}

export interface ProxyFixture {
  core: Core;
  proxy: Proxy;
  partnerId: string;
  createDatabase(): Promise<TenantDb>;
  /** libpq keyword/value connection string for psql/pgbench (SNI form, hostaddr 127.0.0.1). */
  conninfo(db: TenantDb, extra?: string): string;
  /** The same through the database's `-pooler` endpoint. */
  pooledConninfo(db: TenantDb, extra?: string): string;
  stop(): Promise<void>;
}

export async function startProxyFixture(env: Record<string, string> = {}, opts: ProxyOptions = {}): Promise<ProxyFixture> {
  const config = testConfig(env);
  const core = await startCore(config, createLogger(config.logLevel));
  const proxy = await startProxy(core, opts);
  const partnerId = `partner-${crypto.randomBytes(4).toString('hex')}`;
  await core.catalog.query('INSERT INTO partners (id, name) VALUES ($1, $2)', [partnerId, 'test partner']);
  return {
    core,
    proxy,
    partnerId,
    async createDatabase() {
      const { database, password } = await core.databases.create({ partnerId, userId: `user-${crypto.randomBytes(4).toString('hex')}` });
      const info = connectionInfo({ domain: config.domain, port: proxy.port, caPath: proxy.caPath }, database.endpointId, database.ownerRole, password, database.databaseName);
      return {
        database, password, endpointId: database.endpointId, role: database.ownerRole,
        uri: info.connection_uri, uriNoSni: info.connection_uri_no_sni,
        pooledUri: info.pooled_connection_uri, pooledUriNoSni: info.pooled_connection_uri_no_sni,
      };
    },
    pooledConninfo(db, extra = '') {
      return `host=${db.endpointId}-pooler.${config.domain} hostaddr=127.0.0.1 port=${proxy.port} user=${db.role} dbname=${db.database.databaseName} ` +
        `password=${db.password} sslmode=require ${extra}`;
    },
    conninfo(db, extra = '') {
      return `host=${db.endpointId}.${config.domain} hostaddr=127.0.0.1 port=${proxy.port} user=${db.role} dbname=${db.database.databaseName} ` +
        `password=${db.password} sslmode=require ${extra}`;
    },
    async stop() {
      await proxy.close();
      await core.stop();
      fs.rmSync(config.dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs psql -XAt with a connection string and SQL; resolves stdout, rejects with stderr. */
export async function psql(conninfo: string, sql: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await execFileAsync('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', sql], {
    env: { ...process.env, PGCONNECT_TIMEOUT: '30', ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout.trim();
}

/** The stderr of a psql run expected to fail. */
export async function psqlError(conninfo: string, sql = 'SELECT 1', env: Record<string, string> = {}): Promise<string> {
  try {
    await psql(conninfo, sql, env);
  } catch (err) {
    return String((err as { stderr?: string }).stderr);
  }
  throw new Error('psql succeeded but was expected to fail');
}

/**
 * A socket for a client's `stream` option (node-postgres) that connects from `from` (a loopback
 * address of its own) and opens with `first`, if given, before anything its user writes.
 */
export function socketFrom(from: string, first?: Buffer): net.Socket {
  const socket = new net.Socket();
  const connect = socket.connect.bind(socket) as (opts: net.TcpSocketConnectOpts) => net.Socket;
  (socket as unknown as { connect: (port: number, host: string) => net.Socket }).connect = (port, host) => {
    if (first) socket.once('connect', () => socket.write(first));
    return connect({ port, host, localAddress: from });
  };
  return socket;
}
