/**
 * The proxy's listener and lifecycle: TLS identity, cancel keys, auth limits, live sessions.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { PgfleetError } from '../src/errors.ts';
import type { Core } from '../src/gateway.ts';
import { AuthLimiter, type AuthLimits, DEFAULT_AUTH_LIMITS } from './auth-limiter.ts';
import { CancelKeys } from './cancel.ts';
import { type ConnectionContext, handleConnection } from './connection.ts';
import { Pooler } from './pool/pooler.ts';
import type { Session } from './session.ts';
import { loadTlsIdentity, serverEndPoint } from './tls-certs.ts';

export interface ProxyOptions {
  host?: string;
  port?: number;
  authLimits?: AuthLimits;
  handshakeTimeoutMs?: number;
  /** Usage and quotas for this listener's sessions (default on; off for trusted internal traffic). */
  metering?: boolean;
}

export interface Proxy {
  port: number;
  /** The generated local CA (sslrootcert for verify-full); undefined with a configured certificate. */
  caPath: string | undefined;
  /** Live relayed sessions, for metering. */
  sessions: Set<Session>;
  /** The transaction pooler of `-pooler` endpoints. */
  pooler: Pooler;
  close(): Promise<void>;
}

export async function startProxy(core: Core, opts: ProxyOptions = {}): Promise<Proxy> {
  const { config } = core;
  const identity = await loadTlsIdentity({ dataDir: config.dataDir, domain: config.domain, certFile: config.tlsCert, keyFile: config.tlsKey });
  const sessions = new Set<Session>();
  const cancels = new CancelKeys();
  const pooler = new Pooler(core, cancels);
  const ctx: ConnectionContext = {
    core,
    secureContext: tls.createSecureContext({ cert: identity.cert, key: identity.key, minVersion: 'TLSv1.2' }),
    channelBinding: serverEndPoint(identity.cert),
    allowPlaintext: config.allowPlaintext,
    cancels,
    limiter: new AuthLimiter(opts.authLimits ?? DEFAULT_AUTH_LIMITS),
    sessions,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 30_000,
    metering: opts.metering ?? true,
    pooler,
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
  const terminate = (branchId: string, reason: PgfleetError) => {
    for (const session of sessions) if (session.branchId === branchId) session.terminate(reason);
  };
  core.computes.on('terminate', terminate);
  if (identity.caPath) core.log.info({ ca: identity.caPath }, 'proxy TLS certificate issued by the local CA (use as sslrootcert)');
  return {
    port,
    caPath: identity.caPath,
    sessions,
    pooler,
    close: async () => {
      core.computes.off('terminate', terminate);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await Promise.allSettled([...handlers]);
      pooler.close();
      await closed;
    },
  };
}
