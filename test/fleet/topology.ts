/**
 * The fleet topology from real processes: a catalog Postgres (embedded binaries, TCP on
 * loopback), redis-server, N pgfleet processes (main.ts with DATABASE_URL and REDIS_URL, each
 * its own data dir), and HAProxy in TCP mode before the proxies and HTTP mode before the APIs.
 * Shared by test/fleet.test.ts and bench/fleet.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { PostgresServer, initCluster } from '../../src/pg/server.ts';
import { PgInstalls } from '../../src/pg/install.ts';
import { resolveComputeUser } from '../../src/pg/os-user.ts';
import { loadTlsIdentity } from '../../proxy/tls-certs.ts';
import { TS_LOADER, postmastersUnder, repoRoot, tmpDataDir } from '../helpers.ts';
import { freePort } from '../proxy-helpers.ts';
import { until } from '../helpers.ts';
import { type RedisServer, startRedis } from '../redis-server.ts';

export const ADMIN_KEY = 'fleet-admin-key-0123456789';
/** The address HAProxy connects to the gateways from: their trusted proxy. */
export const LB_SOURCE = '127.0.0.9';

export interface GatewayProcess {
  name: string;
  nodeId: string;
  dataDir: string;
  apiPort: number;
  proxyPort: number;
  apiUrl: string;
  child: ChildProcess;
  /** Started again with the same data dir and ports (after a kill). */
  restart(): Promise<void>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export interface Fleet {
  root: string;
  catalogUrl: string;
  redis: RedisServer;
  gateways: GatewayProcess[];
  /** HAProxy: TCP before the proxies, HTTP before the APIs. */
  lb: { proxyPort: number; apiUrl: string };
  caPath: string;
  env: Record<string, string>;
  /** A key's value in Redis (null when absent). */
  redisGet(key: string): Promise<string | null>;
  /** Stops everything and removes its files; `failed` first prints the end of each gateway's log. */
  stop(failed?: boolean): Promise<void>;
}

/** A catalog Postgres of its own on loopback TCP, as a fleet shares (DATABASE_URL). */
export async function startCatalog(root: string) {
  const user = resolveComputeUser('postgres');
  const install = PgInstalls.discover(undefined, user, root).get();
  const pgdata = path.join(root, 'catalog', 'pgdata');
  await initCluster(install, user, pgdata);
  const port = await freePort();
  const server = new PostgresServer({
    install, user, pgdata, socketDir: path.join(root, 'catalog', 'run'), logFile: path.join(root, 'catalog', 'postgres.log'),
    settings: { listen_addresses: '127.0.0.1', port, max_connections: 300, fsync: 'off', shared_buffers: '32MB' },
    startTimeoutMs: 60_000,
  });
  await server.start();
  return { server, url: `postgres://pgfleet_admin@127.0.0.1:${port}/postgres` };
}

/**
 * deploy/haproxy.cfg (what docker-compose.yml runs) with loopback ports for its binds and this
 * fleet's gateways as its servers: the topology tested is the one the compose file describes.
 */
export function haproxyConfig(lb: { proxyPort: number; apiPort: number }, gateways: { name: string; proxyPort: number; apiPort: number }[]): string {
  const servers = (port: (g: (typeof gateways)[number]) => number) => gateways.map((g) => `  server ${g.name} 127.0.0.1:${port(g)}`).join('\n');
  return fs.readFileSync(path.join(repoRoot, 'deploy', 'haproxy.cfg'), 'utf8')
    // HAProxy reaches the gateways from an address of its own (the trusted proxy); clients come from any other.
    .replace(/^( {2}default-server .*send-proxy-v2.*)$/m, `$1 source ${LB_SOURCE}`)
    .replace(/^ {2}server gateway-\d+ gateway-\d+:\d+\n/gm, '')
    .replace('bind :5432', `bind 127.0.0.1:${lb.proxyPort}`)
    .replace('bind :8080', `bind 127.0.0.1:${lb.apiPort}`)
    .replace(/^( {2}balance leastconn\n)/m, `$1${servers((g) => g.proxyPort)}\n`)
    .replace(/^( {2}option httpchk GET \/readyz\n)/m, `$1${servers((g) => g.apiPort)}\n`);
}

/** Nothing accepts a connection on this loopback port. */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

async function waitReady(url: string, child: ChildProcess, log: string): Promise<void> {
  await until(`${url} to be ready`, async () => {
    if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}: ${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    try {
      return (await fetch(`${url}/readyz`)).ok;
    } catch {
      return false;
    }
  }, 120_000);
}

export interface FleetOptions {
  gateways?: number;
  /** Extra environment for every gateway. */
  env?: Record<string, string>;
  /** false: no Redis (a single gateway on an external catalog, for baselines). */
  redis?: boolean;
}

/** On a failure: each gateway's errors from the whole run, then its last lines (the tail alone misses the cause). */
function printLogTails(root: string): void {
  for (const file of fs.readdirSync(root).filter((f) => f.endsWith('.log'))) {
    const lines = fs.readFileSync(path.join(root, file), 'utf8').trimEnd().split('\n');
    const errors = lines.filter((l) => /^\{"level":(50|60)/.test(l)).slice(-60);
    process.stderr.write(`--- ${file}: errors (${errors.length}) ---\n${errors.join('\n')}\n--- ${file}: last 80 lines ---\n${lines.slice(-80).join('\n')}\n`);
  }
}

export async function startFleet(opts: FleetOptions = {}): Promise<Fleet> {
  const root = tmpDataDir('fleet');
  const stops: (() => Promise<unknown> | void)[] = [];
  const stop = async (failed = false) => {
    for (const s of stops.reverse()) await s();
    if (failed) printLogTails(root);
    fs.rmSync(root, { recursive: true, force: true });
  };
  try {
    const catalog = await startCatalog(root);
    stops.push(() => catalog.server.stop());
    const redis = await startRedis();
    stops.push(() => redis.kill());
    if (opts.redis === false) await redis.kill();

    // One certificate for every gateway, so that any door verifies the same way.
    const tlsDir = path.join(root, 'shared');
    const identity = await loadTlsIdentity({ dataDir: tlsDir, domain: 'localhost' });
    fs.writeFileSync(path.join(tlsDir, 'chain.pem'), identity.cert);
    const env: Record<string, string> = {
      DATABASE_URL: catalog.url,
      ...(opts.redis === false ? {} : { REDIS_URL: redis.url }),
      PGFLEET_SECRET_KEY: crypto.randomBytes(32).toString('hex'),
      PGFLEET_ADMIN_KEY: ADMIN_KEY,
      PGFLEET_TLS_CERT: path.join(tlsDir, 'chain.pem'),
      PGFLEET_TLS_KEY: path.join(tlsDir, 'tls', 'server.key'),
      PGFLEET_DOMAIN: 'localhost',
      PGFLEET_USAGE_FLUSH_SECONDS: '1',
      PGFLEET_JWKS_ALLOW_HTTP: 'true',
      PGFLEET_TRUSTED_PROXIES: LB_SOURCE,
      // One process per gateway unless a test asks for proxy workers (fleet.test.ts does).
      PGFLEET_WORKERS: '0',
      ...opts.env,
      // info: the gateway's 'pgfleet is ready' line tells the ports it chose.
      PGFLEET_LOG_LEVEL: 'info',
    };
    const gateways: GatewayProcess[] = [];
    for (let i = 0; i < (opts.gateways ?? 2); i++) {
      const name = `g${i + 1}`;
      const dataDir = path.join(root, name);
      fs.mkdirSync(dataDir, { mode: 0o711 });
      const log = path.join(root, `${name}.log`);
      const g: GatewayProcess = {
        name, nodeId: `node-${name}`, dataDir, apiPort: 0, proxyPort: 0, apiUrl: '',
        child: undefined as unknown as ChildProcess,
        async restart() {
          // Ports are chosen by the gateway at its first start (no race with other tests for a
          // port picked in advance) and kept across restarts, as HAProxy's servers name them.
          const offset = fs.existsSync(log) ? fs.statSync(log).size : 0;
          const out = fs.openSync(log, 'a');
          g.child = spawn(process.execPath, ['--import', TS_LOADER, path.join(repoRoot, 'main.ts')], {
            cwd: repoRoot,
            env: {
              ...process.env, ...env, PGFLEET_DATA_DIR: dataDir, PGFLEET_NODE_ID: g.nodeId,
              PGFLEET_API_PORT: String(g.apiPort), PGFLEET_PROXY_PORT: String(g.proxyPort), PGFLEET_NODE_PORT: '0',
            },
            stdio: ['ignore', out, out],
          });
          fs.closeSync(out);
          let ready: { api: string; proxy_port: number } | undefined;
          await until(`${name} to start`, () => {
            if (g.child.exitCode !== null) throw new Error(`${name} exited with ${g.child.exitCode}: ${fs.readFileSync(log, 'utf8').slice(offset).slice(-2000)}`);
            const line = fs.readFileSync(log, 'utf8').slice(offset).split('\n').find((l) => l.includes('"pgfleet is ready"'));
            if (line) ready = JSON.parse(line);
            return ready !== undefined;
          }, 120_000);
          g.apiUrl = ready!.api;
          g.apiPort = Number(new URL(g.apiUrl).port);
          g.proxyPort = ready!.proxy_port;
          await waitReady(g.apiUrl, g.child, log);
        },
        async kill9() {
          const c = g.child;
          if (c.exitCode !== null || c.signalCode !== null) return;
          await new Promise((r) => {
            c.once('exit', r);
            c.kill('SIGKILL');
          });
          // Its proxy workers (PGFLEET_WORKERS) leave when they lose their primary: down means nothing answers on its port.
          await until(`${name}'s proxy port to close`, () => refuses(g.proxyPort), 30_000);
        },
        async stop() {
          const c = g.child;
          if (c.exitCode === null && c.signalCode === null) {
            await new Promise((r) => {
              c.once('exit', r);
              c.kill('SIGTERM');
            });
          }
          // A gateway killed with -9 leaves its computes: stop them as its next start would.
          for (const pid of postmastersUnder(dataDir)) {
            try {
              process.kill(pid, 'SIGQUIT');
            } catch {
              /* gone */
            }
          }
        },
      };
      gateways.push(g);
      stops.push(() => g.stop());
    }
    // The first applies the catalog migrations; the others start together.
    await gateways[0]!.restart();
    await Promise.all(gateways.slice(1).map((g) => g.restart()));

    // HAProxy cannot be told to pick its ports: ports free a moment ago may be taken meanwhile, so try again.
    let lbPorts = { proxyPort: 0, apiPort: 0 };
    let lbApi = '';
    for (let attempt = 1; ; attempt++) {
      lbPorts = { proxyPort: await freePort(), apiPort: await freePort() };
      lbApi = `http://127.0.0.1:${lbPorts.apiPort}`;
      const cfg = path.join(root, 'haproxy.cfg');
      fs.writeFileSync(cfg, haproxyConfig(lbPorts, gateways));
      const haproxy = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let haproxyErr = '';
      haproxy.stderr!.on('data', (d) => (haproxyErr += d));
      const stopHaproxy = () => new Promise((r) => {
        if (haproxy.exitCode !== null) return r(undefined);
        haproxy.once('exit', r);
        haproxy.kill('SIGTERM');
      });
      try {
        await until('haproxy to answer', async () => {
          if (haproxy.exitCode !== null) throw new Error(`haproxy exited: ${haproxyErr}`);
          return fetch(`${lbApi}/readyz`).then((r) => r.ok, () => false);
        });
        stops.push(stopHaproxy);
        break;
      } catch (err) {
        await stopHaproxy();
        if (attempt >= 3) throw err;
      }
    }
    const redisGet = async (key: string) => {
      const r = new Redis(redis.url, { maxRetriesPerRequest: 0, lazyConnect: true });
      r.on('error', () => {});
      try {
        await r.connect();
        return await r.get(key);
      } finally {
        r.disconnect();
      }
    };
    return { root, catalogUrl: catalog.url, redis, gateways, lb: { proxyPort: lbPorts.proxyPort, apiUrl: lbApi }, caPath: path.join(tlsDir, 'tls', 'ca.crt'), env, redisGet, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** JSON over HTTP with a bearer key. */
export async function call(base: string, method: string, route: string, key: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
