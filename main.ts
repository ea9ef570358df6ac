/**
 * The composition root: starts the core, then the doors (API and proxy), in one process.
 * It lives outside src/ because src/ never imports the doors.
 */
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { startWithWorkers } from './cluster/primary.ts';
import { buildApi } from './api/server.ts';
import { type Proxy, startProxy } from './proxy/server.ts';
import { type Config, loadConfig } from './src/config.ts';
import { ConfigError } from './src/errors.ts';
import { type Core, startCore } from './src/gateway.ts';
import { createLogger } from './src/log.ts';

export interface Gateway {
  core: Core;
  apiPort: number;
  apiUrl: string;
  proxyPort: number;
  /** The serverless door's port (PGFLEET_HTTP_PORT), when it is served. */
  httpPort: number | undefined;
  /** The local CA that issued the proxy's certificate (sslrootcert); undefined with PGFLEET_TLS_CERT. */
  caPath: string | undefined;
  stop(): Promise<void>;
}

/** How often a gateway looks for migration jobs to run (a new one, or one whose gateway is gone). */
const MIGRATION_POLL_MS = 1000;

/** The address this process reaches its own proxy at. */
const loopbackFor = (host: string) => (host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host);

export async function startGateway(config: Config): Promise<Gateway> {
  const core = await startCore(config, createLogger(config.logLevel, config.logFormat));
  let proxy: Proxy | undefined;
  try {
    proxy = await startProxy(core);
    if (proxy.caPath) process.stderr.write(`pgfleet proxy CA (for sslmode=verify-full sslrootcert=…): ${proxy.caPath}\n`);
    const api = await buildApi(core, {
      publicAddress: {
        domain: config.domain, port: proxy.port, configuredCertificate: !proxy.caPath, caPath: proxy.caPath,
        httpPort: proxy.httpPort, httpPlaintext: config.allowPlaintext,
      },
    });
    await api.listen({ host: config.apiHost, port: config.apiPort });
    // Migration jobs reach each database through this proxy, like any client.
    core.migrations.runner.start({
      host: loopbackFor(config.proxyHost), port: proxy.port,
      // The local CA, or (PGFLEET_TLS_CERT) the proxy's own certificate chain, trusted as it is: the job talks to this very process.
      ca: fs.readFileSync(proxy.caPath ?? config.tlsCert!, 'utf8'),
      servername: (endpointId) => `${endpointId}.${config.domain}`, domain: config.domain,
    }, MIGRATION_POLL_MS);
    const apiPort = (api.server.address() as AddressInfo).port;
    core.log.info({ api: `http://${config.apiHost}:${apiPort}`, proxy_port: proxy.port, http_port: proxy.httpPort }, 'pgfleet is ready');
    const running = proxy;
    let stopping: Promise<void> | undefined;
    return {
      core,
      apiPort,
      apiUrl: `http://${config.apiHost}:${apiPort}`,
      proxyPort: proxy.port,
      httpPort: proxy.httpPort,
      caPath: proxy.caPath,
      stop: () => (stopping ??= (async () => {
        await api.close();
        await running.close();
        await core.stop();
      })()),
    };
  } catch (err) {
    await proxy?.close();
    await core.stop();
    throw err;
  }
}

/** For a listener's EADDRINUSE: which variable sets that port, and what to do. */
export function portInUse(err: unknown, config: Config): string | undefined {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (e?.code !== 'EADDRINUSE') return undefined;
  const ports: [string, string, number | undefined][] = [
    ['PGFLEET_PROXY_PORT', 'PGFLEET_PROXY_HOST', config.proxyPort],
    ['PGFLEET_API_PORT', 'PGFLEET_API_HOST', config.apiPort],
    ['PGFLEET_HTTP_PORT', 'PGFLEET_PROXY_HOST', config.httpPort],
  ];
  const [name, host] = ports.find(([, , port]) => port === e.port) ?? ['the port', ''];
  return `${e.address ?? ''}:${e.port} is already in use; set ${name} to a free port (0 = any free port)${host ? ` or ${host} to another address` : ''}`;
}

export async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pgfleet: invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let gateway: Gateway;
  try {
    // PGFLEET_WORKERS ≥ 1: the proxy in that many worker processes (cluster/primary.ts); 0: all in this one.
    gateway = config.workers > 0 ? await startWithWorkers(config) : await startGateway(config);
  } catch (err) {
    process.stderr.write(`pgfleet: ${portInUse(err, config) ?? (err instanceof Error ? err.message : String(err))}\n`);
    process.exit(1);
  }
  // Any number of these signals, from a terminal, a supervisor or a kill of the whole process group,
  // lead to one fast shutdown of everything pgfleet started; the listeners stay so that a second
  // signal does not kill the process halfway (the postmaster launcher covers a kill -9).
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      gateway.core.log.info({ signal }, 'already stopping');
      return;
    }
    stopping = true;
    gateway.core.log.info({ signal }, 'stopping');
    gateway.stop().then(
      () => {
        gateway.core.log.info({ signal }, 'pgfleet stopped');
        process.exit(0);
      },
      (err) => {
        gateway.core.log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => shutdown(signal));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`pgfleet: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
