/**
 * The proxy's listeners and lifecycle: TLS identity, cancel keys, auth limits, live sessions.
 * The serverless door (WebSocket + POST /sql) shares all of them when its port is set.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { PgfleetError } from '../src/errors.ts';
import type { Core } from '../src/gateway.ts';
import { AuthLimiter, type AuthLimits, DEFAULT_AUTH_LIMITS } from './auth-limiter.ts';
import { CancelKeys } from './cancel.ts';
import { type ConnectionContext, handleConnection } from './connection.ts';
import { type ServerlessDoor, startServerless } from './serverless/server.ts';
import type { Session } from './session.ts';
import { loadTlsIdentity, serverEndPoint } from './tls-certs.ts';

export interface ProxyOptions {
  host?: string;
  port?: number;
  authLimits?: AuthLimits;
  handshakeTimeoutMs?: number;
  /** Usage and quotas for this listener's sessions (default on; off for trusted internal traffic). */
  metering?: boolean;
  /** The serverless door's port (default PGFLEET_HTTP_PORT; undefined there = not served). */
  httpPort?: number;
}

export interface Proxy {
  port: number;
  /** The serverless door's port, when it is served. */
  httpPort: number | undefined;
  /** The generated local CA (sslrootcert for verify-full); undefined with a configured certificate. */
  caPath: string | undefined;
  /** Live relayed sessions, for metering. */
  sessions: Set<Session>;
  close(): Promise<void>;
}

export async function startProxy(core: Core, opts: ProxyOptions = {}): Promise<Proxy> {
  const { config } = core;
  const identity = await loadTlsIdentity({ dataDir: config.dataDir, domain: config.domain, certFile: config.tlsCert, keyFile: config.tlsKey });
  const sessions = new Set<Session>();
  const ctx: ConnectionContext = {
    core,
    secureContext: tls.createSecureContext({ cert: identity.cert, key: identity.key, minVersion: 'TLSv1.2' }),
    channelBinding: serverEndPoint(identity.cert),
    allowPlaintext: config.allowPlaintext,
    cancels: new CancelKeys(),
    limiter: new AuthLimiter(opts.authLimits ?? DEFAULT_AUTH_LIMITS),
    sessions,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 30_000,
    metering: opts.metering ?? true,
  };
  const sockets = new Set<net.Socket>();
  const handlers = new Set<Promise<void>>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const handler = handleConnection(socket, ctx)
      .catch((err) => core.log.error({ err }, 'proxy connection failed'))
      .finally(() => handlers.delete(handler));
    handlers.add(handler);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? config.proxyPort, opts.host ?? config.proxyHost, () => resolve());
  });
  server.on('error', (err) => core.log.error({ err }, 'proxy listener error'));
  const port = (server.address() as net.AddressInfo).port;
  const httpPort = opts.httpPort ?? config.httpPort;
  let serverless: ServerlessDoor | undefined;
  try {
    serverless = httpPort === undefined ? undefined : await startServerless(ctx, { host: config.httpHost, port: httpPort, tls: identity });
  } catch (err) {
    server.close();
    throw err;
  }
  const terminate = (branchId: string, reason: PgfleetError) => {
    for (const session of sessions) if (session.branchId === branchId) session.terminate(reason);
  };
  core.computes.on('terminate', terminate);
  if (identity.caPath) core.log.info({ ca: identity.caPath }, 'proxy TLS certificate issued by the local CA (use as sslrootcert)');
  return {
    port,
    httpPort: serverless?.port,
    caPath: identity.caPath,
    sessions,
    close: async () => {
      core.computes.off('terminate', terminate);
      await serverless?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await Promise.allSettled([...handlers]);
      await closed;
    },
  };
}
