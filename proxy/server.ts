/**
 * The proxy's listener and lifecycle: TLS identity, cancel keys, auth limits, live sessions,
 * and what the listener admits: the listener guard (src/limits/listener-guard.ts: connection
 * caps below the descriptor limit, shared fairly between addresses, the opening timeout, PROXY
 * protocol headers from trusted proxies), then the handshake caps of proxy/admission.ts. The
 * serverless door (WebSocket + POST /sql, proxy/serverless/) shares all of these when its port is set.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { ProxyLimits } from '../src/config.ts';
import type { ListenerRefusal, PgfleetError } from '../src/errors.ts';
import { clientConnectionBudget, raiseFdLimit } from '../src/fd-limit.ts';
import type { ProxyCore } from '../src/gateway.ts';
import type { TerminateScope } from '../src/compute-target.ts';
import { type ClientLimits, resolveClientLimits } from '../src/limits/client-limits.ts';
import { FairCaps } from '../src/limits/fair-caps.ts';
import { type GuardOptions, guardListener } from '../src/limits/listener-guard.ts';
import type { WindowCounters } from '../src/limits/window-counters.ts';
import { Admission } from './admission.ts';
import { InFlight } from './in-flight.ts';
import { detectKernelTls } from './kernel-tls.ts';
import { AuthLimiter, type AuthLimits, DEFAULT_AUTH_LIMITS } from './auth-limiter.ts';
import { CancelKeys } from './cancel.ts';
import { handleConnection } from './connection.ts';
import type { ConnectionContext } from './context.ts';
import { Pooler } from './pool/pooler.ts';
import { WarmBackends } from './warm-backends.ts';
import { type ServerlessDoor, startServerless } from './serverless/server.ts';
import { ConnectionRefused } from './errors.ts';
import { errorFor } from './protocol/messages.ts';
import { RefusalLog, type RefusalLogOptions } from './refusal-log.ts';
import type { Session } from './session.ts';
import { loadTlsIdentity, serverEndPoint } from './tls-certs.ts';

export interface ProxyOptions {
  host?: string;
  port?: number;
  authLimits?: Partial<AuthLimits>;
  /** Where failure counts live (default in-process). */
  counters?: WindowCounters;
  /** Listener caps over the configured ones. */
  limits?: Partial<ProxyLimits>;
  refusalLog?: RefusalLogOptions;
  /** Time allowed from accept to the end of authentication. */
  handshakeTimeoutMs?: number;
  /** Usage and quotas for this listener's sessions (default on; off for trusted internal traffic). */
  metering?: boolean;
  /** The serverless door's port (default PGFLEET_HTTP_PORT; undefined there = not served). */
  httpPort?: number;
  /** Reset a pooled backend that changes clients (default on; off only for bench/pooler.ts's baseline of its cost). */
  resetPooledSessions?: boolean;
}

export interface Proxy {
  port: number;
  /** The serverless door's port, when it is served. */
  httpPort: number | undefined;
  /** The generated local CA (sslrootcert for verify-full); undefined with a configured certificate. */
  caPath: string | undefined;
  /** Live relayed sessions, for metering. */
  sessions: Set<Session>;
  /** The transaction pooler of `-pooler` endpoints. */
  pooler: Pooler;
  /** Backends of direct sessions kept for their next client. */
  warm: WarmBackends;
  /** The caps in force (defaults resolved). */
  limits: ClientLimits;
  admission: Admission;
  close(): Promise<void>;
}

export async function startProxy(core: ProxyCore, opts: ProxyOptions = {}): Promise<Proxy> {
  const { config } = core;
  const identity = await loadTlsIdentity({ dataDir: config.dataDir, domain: config.domain, certFile: config.tlsCert, keyFile: config.tlsKey });
  const sessions = new Set<Session>();
  const cancels = new CancelKeys(core.coord);
  const pooler = new Pooler(core, cancels, opts.resetPooledSessions ?? true);
  const warm = new WarmBackends(core, config.warm);
  const fds = raiseFdLimit();
  const budget = clientConnectionBudget(fds, { maxComputes: config.maxComputes, apiMaxConnections: config.apiMaxConnections, nodeLink: config.redisUrl !== undefined });
  const limits = resolveClientLimits({ ...config.proxyLimits, ...opts.limits }, budget);
  const ctx: ConnectionContext = {
    core,
    secureContext: tls.createSecureContext({ cert: identity.cert, key: identity.key, minVersion: 'TLSv1.2' }),
    channelBinding: serverEndPoint(identity.cert),
    allowPlaintext: config.allowPlaintext,
    cancels,
    limiter: new AuthLimiter({ ...DEFAULT_AUTH_LIMITS, ...opts.authLimits }, opts.counters ?? core.coord),
    refusals: new RefusalLog(() => core.log, opts.refusalLog),
    sessions,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 30_000,
    metering: opts.metering ?? true,
    pooler,
    warm,
    databaseMaxClientConnections: limits.databaseMaxClientConnections,
    peerTimeoutMs: limits.startupTimeoutMs,
  };
  // Per connection, only a set entry and a count: the listeners below are made once, not per socket.
  const sockets = new Set<net.Socket>();
  function forget(this: net.Socket) {
    sockets.delete(this);
  }
  const inFlight = new InFlight((err) => core.log.error({ err }, 'proxy connection failed'));
  core.log.info({
    fd_limit: fds.soft, fd_limit_raised_from: fds.raisedFrom, max_client_connections: limits.maxClientConnections,
    max_client_connections_per_address: limits.maxClientConnectionsPerAddress, database_max_client_connections: limits.databaseMaxClientConnections,
    max_handshakes: limits.maxHandshakes, max_handshakes_per_address: limits.maxHandshakesPerAddress,
    trusted_proxies: config.trustedProxies.entries,
  }, 'proxy connection limits');
  const ktls = detectKernelTls();
  core.log.info({ kernel_tls_available: ktls.available, kernel_tls_used: ktls.used }, `kernel TLS: ${ktls.why}`);
  const admission = new Admission(limits);
  // The proxy and the serverless door draw on one budget of client connections.
  const guard: Omit<GuardOptions, 'answer'> = {
    caps: new FairCaps({ total: limits.maxClientConnections, perAddress: limits.maxClientConnectionsPerAddress }, 'connections'),
    openingTimeoutMs: limits.startupTimeoutMs,
    trusted: config.trustedProxies,
    refused: (client, refusal) => ctx.refusals.note({ client, outcome: refusal.message }),
  };
  const server = net.createServer({ noDelay: true }, (socket) => {
    const admitted = admission.admit(socket);
    if (!admitted.ok) {
      socket.on('error', () => {});
      ctx.refusals.note({ client: socket.remoteAddress, outcome: admitted.reason });
      // The client learns why (53300, as Postgres says for too many connections); the socket goes once that is written.
      socket.end(errorFor(new ConnectionRefused(admitted.reason, '53300')), () => socket.destroy());
      return;
    }
    sockets.add(socket);
    socket.on('close', forget);
    handleConnection(socket, ctx, inFlight, admitted.progress);
  });
  // The client learns why in Postgres's words (53300, or 08P01 for a PROXY header out of place).
  guardListener(server, { ...guard, answer: (socket, refusal: ListenerRefusal) => socket.end(errorFor(refusal), () => socket.destroy()) });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? config.proxyPort, opts.host ?? config.proxyHost, () => resolve());
  });
  // accept() failing (EMFILE, ENFILE) is counted like a refusal, not logged once per attempt.
  server.on('error', (err: NodeJS.ErrnoException) => ctx.refusals.note({ outcome: `accept failed: ${err.code ?? err.message}` }));
  const port = (server.address() as net.AddressInfo).port;
  const httpPort = opts.httpPort ?? config.httpPort;
  let serverless: ServerlessDoor | undefined;
  try {
    serverless = httpPort === undefined ? undefined
      : await startServerless(ctx, { host: config.httpHost, port: httpPort, tls: identity, admission, guard, sql: config.sql });
  } catch (err) {
    server.close();
    throw err;
  }
  // `backendPids`: only the sessions those backends serve (commits the store did not take in time).
  const terminate = (branchId: string, reason: PgfleetError, scope: TerminateScope = {}) => {
    const pids = scope.backendPids;
    for (const session of sessions) {
      if (session.branchId !== branchId) continue;
      if (pids && (session.backendPid === undefined || !pids.includes(session.backendPid))) continue;
      session.terminate(reason);
    }
  };
  core.computes.on('terminate', terminate);
  if (identity.caPath) core.log.info({ ca: identity.caPath }, 'proxy TLS certificate issued by the local CA (use as sslrootcert)');
  return {
    port,
    httpPort: serverless?.port,
    caPath: identity.caPath,
    sessions,
    pooler,
    warm,
    limits,
    admission,
    close: async () => {
      core.computes.off('terminate', terminate);
      await serverless?.close();
      ctx.refusals.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await inFlight.drained();
      pooler.close();
      warm.close();
      await closed;
    },
  };
}
