/**
 * One client connection, top to bottom: startup → endpoint → auth (SCRAM, or a cleartext
 * password or JWT over TLS) → quotas → wake → backend startup → relay, then one log line.
 * The steps are exported one by one: the serverless door (proxy/serverless/) runs the same
 * ones for its WebSocket sessions and its HTTP queries, and a `-pooler` endpoint takes them up
 * to the quotas, then the transaction pooler (proxy/pool/) serves it.
 */
import type net from 'node:net';
import { decodeJwt } from 'jose';
import type { Duplex } from 'node:stream';
import type { BranchRoute } from '../src/catalog/routes.ts';
import type { Lease } from '../src/compute-target.ts';
import { PgfleetError, TokenError } from '../src/errors.ts';
import type { ProxyCore } from '../src/gateway.ts';
import { looksLikeJwt } from '../src/jwt/looks-like-jwt.ts';
import type { HandshakeProgress } from './admission.ts';
import type { AuthLimiter } from './auth-limiter.ts';
import type { CancelKey } from './cancel.ts';
import { authIO, checkPassword, readCleartextPassword, scramAuth } from './auth.ts';
import type { AuthIO } from './scram.ts';
import { type BackendSession, connectBackend } from './backend.ts';
import {
  HOW_TO_NAME_AN_ENDPOINT, endpointFromHost, endpointFromPassword, endpointFromSni, endpointFromStartup, pgfleetOptions, poolerEndpoint,
} from './endpoint.ts';
import { AuthFailed, BackendError, ConnectionRefused, ProtocolViolation, Unanswered } from './errors.ts';
import { type Handshake, type HandshakeOptions, type WebSocketTransport, readStartup } from './handshake.ts';
import { NOT_SETTINGS } from './protocol/startup.ts';
import { authenticationOk, errorFor } from './protocol/messages.ts';
import type { Pooler } from './pool/pooler.ts';
import type { RefusalLog } from './refusal-log.ts';
import { refusalOf } from './refusal-reason.ts';
import { type RelayEnd, relay } from './relay.ts';
import type { Session } from './session.ts';
import { DirectBackend, type WarmBackends } from './warm-backends.ts';

export interface ConnectionContext extends HandshakeOptions {
  core: ProxyCore;
  /** tls-server-end-point hash of the proxy's certificate. */
  channelBinding: Buffer;
  limiter: AuthLimiter;
  /** Log lines of connections that never authenticated (sampled under a flood). */
  refusals: RefusalLog;
  sessions: Set<Session>;
  /** Time allowed from accept to the end of authentication. */
  handshakeTimeoutMs: number;
  /** Sessions count as usage and quotas hold. */
  metering: boolean;
  /** Serves `-pooler` endpoints. */
  pooler: Pooler;
  /** Backends of direct sessions kept for the next client of the same startup. */
  warm: WarmBackends;
  /** Client connections of one database whose quota max_client_connections is unset. */
  databaseMaxClientConnections: number;
  /** Time a client has to answer each step of authentication (the startup timeout). */
  peerTimeoutMs: number;
}


/** A client connection over TCP: the Postgres handshake (TLS, SNI), then the shared steps. */
export function handleConnection(raw: net.Socket, ctx: ConnectionContext, progress?: HandshakeProgress): Promise<void> {
  raw.setNoDelay(true);
  return serveConnection(raw, raw.remoteAddress ?? '', ctx, { progress });
}

/** What the door that accepted a connection tells the shared steps. */
export interface ConnectionDoor {
  /** The listener's handshake caps, told when the startup arrived and when auth succeeded. */
  progress?: HandshakeProgress;
  /** A WebSocket's byte stream: the password comes in clear, the host names the endpoint. */
  websocket?: WebSocketTransport;
}

/** One connection of either door, from startup to its log line: the TCP proxy's socket, or a WebSocket's byte stream. */
export async function serveConnection(raw: Duplex, clientAddress: string, ctx: ConnectionContext, door: ConnectionDoor = {}): Promise<void> {
  const started = Date.now();
  const line: Record<string, unknown> = { client: clientAddress };
  if (door.websocket) line.door = 'websocket';
  raw.on('error', () => {});
  let client: Duplex = raw;
  let lease: Lease | undefined;
  let session: Session | undefined;
  let endAdmission: (() => void) | undefined;
  let authenticated = false;
  let handedOff = false;
  const timer = setTimeout(() => raw.destroy(), ctx.handshakeTimeoutMs);
  try {
    const hs = await readStartup(raw, ctx, (secure) => {
      client = secure;
      client.on('error', () => {});
    }, door.websocket);
    if (!hs) {
      line.outcome = 'cancel_request';
      return;
    }
    door.progress?.startupReceived();
    const role = hs.startup.params.get('user')!;
    line.role = role;
    const io = authIO(hs, ctx.peerTimeoutMs);
    const { route, pooled, saslFinal } = await identifyAndAuthenticate(hs, io, role, clientAddress, line, ctx);
    clearTimeout(timer);
    authenticated = true;
    door.progress?.authenticated();
    endAdmission = await admit(route, ctx);
    // SASLFinal and AuthenticationOk go in one write, with the rest of the startup answer when a warm backend has it at once.
    const authAnswer = saslFinal ? Buffer.concat([saslFinal, authenticationOk()]) : authenticationOk();

    if (pooled) {
      client.write(authAnswer);
      line.pooled = true;
      const pooledClient = await ctx.pooler.connect({
        socket: client, route, role, params: hs.startup.params, options: pgfleetOptions(hs.startup.params.get('options')).rest,
        early: hs.reader.detach(), session: newSession(route, role, clientAddress, started, () => {}),
      });
      openSession(pooledClient, ctx);
      // Handed off: this function's state (handshake, reader) is not kept alive while a pooled
      // client idles, which is most of its life; its end is recorded by this callback.
      const admitted = endAdmission;
      endAdmission = undefined;
      handedOff = true;
      pooledClient.whenEnded((outcome) => {
        line.outcome = outcome;
        admitted?.();
        closeSession(pooledClient, line, ctx);
        logConnection(line, 'pooled', started, true, ctx);
      });
      return;
    }

    const params = backendParams(hs.startup.params, role);
    const warmKey = ctx.warm.keyOf(route, params);
    let authSent = false;
    const sendAuth = () => {
      authSent = true;
      client.write(authAnswer);
    };
    // Without a kept backend, the client hears that it got in while its backend starts (or its compute wakes).
    const kept = ctx.warm.has(warmKey);
    if (!kept) sendAuth();
    lease = await ctx.core.acquire(route);
    let backend = kept ? await ctx.warm.take(warmKey) : undefined;
    if (backend && backend.address !== lease.address) {
      backend.close(); // kept from an earlier run of the compute (it restarted meanwhile)
      backend = undefined;
    }
    if (backend) line.warm = true;
    else if (!authSent) sendAuth();
    backend ??= await startDirect(lease, params, warmKey, route, ctx);
    ctx.core.metrics.backends.inc({ kind: backend.reused ? 'warm' : 'new' });
    const direct = backend;
    let key: CancelKey | undefined;
    let end: RelayEnd | undefined;
    try {
      // The client is told its backend's real pid (kept backends included); the secret is fresh.
      key = await ctx.cancels.issue(direct.session.pid, () => direct.cancelTarget());
      const answer = direct.startupAnswer(key);
      client.write(authSent ? answer : Buffer.concat([authAnswer, answer]));
      // The compute is being suspended (a quota ran out): the client learns why, then the session ends.
      session = newSession(route, role, clientAddress, started, (reason) => {
        if (client.writable) client.end(errorFor(reason));
        direct.socket.destroy();
      });
      session.backendPid = direct.session.pid;
      openSession(session, ctx);
      end = await relay(client, direct.socket, session, {
        fromClient: hs.reader.detach(), fromCompute: direct.takeRest(), parameters: direct.session.parameters,
        keepIdle: ctx.warm.keeps(direct.address),
      });
      line.outcome = end.outcome;
    } finally {
      if (key) ctx.cancels.revoke(key);
      if (end?.idle) ctx.warm.give(direct);
      else if (!end) direct.socket.destroy();
    }
  } catch (err) {
    noteFailure(err, line, ctx);
    if (client.writable && !(err instanceof Unanswered)) client.end(errorFor(err));
    else client.destroy(err as Error); // a WebSocket closes with the error as its reason
  } finally {
    clearTimeout(timer);
    lease?.release();
    endAdmission?.();
    if (session) closeSession(session, line, ctx);
    if (!handedOff) logConnection(line, session ? 'relayed' : String(line.outcome), started, authenticated, ctx);
  }
}

/**
 * Quotas, then the session counts against the database's connection caps (direct, pooled,
 * WebSocket and HTTP alike, from before the compute is acquired, so sessions waiting for a wake
 * count); returns what ends that count, when this listener meters.
 */
export async function admit(route: BranchRoute, ctx: ConnectionContext): Promise<(() => void) | undefined> {
  if (!ctx.metering) return undefined;
  const overQuota = await ctx.core.usage.check(route);
  if (overQuota) throw overQuota;
  return ctx.core.usage.admit(route, ctx.databaseMaxClientConnections);
}

/** A session as metering and quota enforcement see it; `terminate` ends it with a reason. */
export function newSession(route: BranchRoute, role: string, clientAddress: string, started: number, terminate: Session['terminate']): Session {
  return {
    endpointId: route.endpointId, branchId: route.branchId, databaseId: route.databaseId, partnerId: route.partnerId,
    role, clientAddress, startedAt: new Date(started), bytesFromClient: 0, bytesToClient: 0, terminate,
  };
}

/** The session counts: live (a quota suspension reaches it) and metered. */
export function openSession(session: Session, ctx: ConnectionContext): void {
  ctx.sessions.add(session);
  if (ctx.metering) ctx.core.usage.openSession(session);
}

/** The session's bytes go to metering, the operator metrics and the log line. */
export function closeSession(session: Session, line: Record<string, unknown>, ctx: ConnectionContext): void {
  ctx.sessions.delete(session);
  if (ctx.metering) ctx.core.usage.closeSession(session);
  ctx.core.metrics.bytes.inc({ direction: 'from_client' }, session.bytesFromClient);
  ctx.core.metrics.bytes.inc({ direction: 'to_client' }, session.bytesToClient);
  line.bytes_in = session.bytesFromClient;
  line.bytes_out = session.bytesToClient;
}

/** Puts why a connection failed on its log line (in words an operator can act on) and counts refusals. */
export function noteFailure(err: unknown, line: Record<string, unknown>, ctx: ConnectionContext): void {
  line.outcome = err instanceof PgfleetError ? err.code : 'error';
  if (!(err instanceof PgfleetError) || err instanceof ProtocolViolation || err instanceof Unanswered) line.err = (err as Error).message;
  const refusal = refusalOf(err, line.endpoint);
  if (refusal) {
    line.refusal = refusal.code;
    line.reason = refusal.why;
    ctx.core.failures.loginRefused({
      reason: refusal.code, why: refusal.why, endpoint: line.endpoint as string | undefined, role: line.role as string | undefined, client: line.client as string | undefined,
    });
  }
  if (err instanceof AuthFailed || err instanceof TokenError) ctx.core.metrics.authFailures.inc({ reason: err instanceof TokenError ? 'token' : 'password' });
  else if (err instanceof ConnectionRefused && err.sqlstate === '28000') ctx.core.metrics.authFailures.inc({ reason: 'refused' });
}

/** The one log line (and connection metric) per connection or request; refusals before auth are sampled. */
export function logConnection(line: Record<string, unknown>, outcome: string, started: number, authenticated: boolean, ctx: ConnectionContext): void {
  ctx.core.metrics.connections.inc({ outcome });
  line.duration_ms = Date.now() - started;
  if (authenticated) ctx.core.log.info(line, 'connection');
  else ctx.refusals.note(line);
}

/**
 * Finds the endpoint and authenticates the role on it. A named endpoint (SNI or options) means
 * SCRAM, unless options say `auth=jwt`: SCRAM keeps channel binding, and cannot carry a token.
 * Otherwise, over TLS, a cleartext password is asked for (see authenticateWithPassword). A
 * WebSocket always gets the cleartext request: the serverless driver sends its password before
 * being asked, and the WebSocket's own TLS protects it.
 */
async function identifyAndAuthenticate(
  hs: Handshake, io: AuthIO, role: string, client: string, line: Record<string, unknown>, ctx: ConnectionContext,
): Promise<{ route: BranchRoute; pooled: boolean; saslFinal?: Buffer }> {
  const options = pgfleetOptions(hs.startup.params.get('options'));
  const named = hs.websocket
    ? endpointFromHost(hs.websocket.host, ctx.core.config.domain)
    : endpointFromSni(hs.tls?.servername, ctx.core.config.domain);
  const namedEndpoint = endpointFromStartup(named, options.endpoint);
  line.endpoint = namedEndpoint;
  const { endpoint, pooled } = poolerEndpoint(namedEndpoint);
  if (endpoint && !options.jwt && !hs.websocket) {
    const route = await routeFor(endpoint, client, ctx);
    // SCRAM never shows the proxy the password: a JWT sent this way fails as a wrong password, with no
    // hint about tokens, since the proxy cannot tell it from the most common mistake (a wrong password).
    const saslFinal = await limited(ctx, endpoint, client, () => scramAuth(io, route, role, hs.tls ? ctx.channelBinding : undefined));
    return { route, pooled, saslFinal };
  }
  if (!hs.tls && !hs.websocket) {
    throw options.jwt
      ? new ConnectionRefused('a JWT is only accepted over TLS', '28000')
      : new ConnectionRefused('the connection names no endpoint', '08004', HOW_TO_NAME_AN_ENDPOINT);
  }
  return passwordAuth(await readCleartextPassword(io), { endpoint, role, client, jwtRequired: options.jwt }, line, ctx, pooled);
}

/** Who is asking, for a password given in clear. */
export interface PasswordClaim {
  /** Named by the host or options; the password may name it instead (prefix, or a JWT). */
  endpoint: string | undefined;
  role: string;
  /** The client's address, for the failure limits. */
  client: string;
  /** `auth=jwt`: only a JWT will do. */
  jwtRequired?: boolean;
}

/**
 * A password given in clear, told apart by its form: a JWT (which names its database itself),
 * `endpoint=<id>;<JWT>`, `endpoint=<id>;<password>`, or the role's password for the endpoint
 * already named. Failures count against the limits; the route is returned.
 */
export async function authenticateWithPassword(password: string, claim: PasswordClaim, line: Record<string, unknown>, ctx: ConnectionContext): Promise<BranchRoute> {
  return (await passwordAuth(password, claim, line, ctx, false)).route;
}

/** authenticateWithPassword, telling whether the endpoint named (here, or by a password prefix) is a `-pooler` one. */
async function passwordAuth(
  password: string, claim: PasswordClaim, line: Record<string, unknown>, ctx: ConnectionContext, namedPooled: boolean,
): Promise<{ route: BranchRoute; pooled: boolean }> {
  const { role, client } = claim;
  if (looksLikeJwt(password)) return { route: await jwtAuth(password, claim.endpoint, role, client, line, ctx), pooled: namedPooled };
  if (claim.jwtRequired) throw new TokenError('the password is not a JWT', 'auth=jwt was given but the password does not look like a JWT');
  const prefixed = endpointFromPassword(password);
  const prefix = poolerEndpoint(prefixed?.endpoint);
  const endpoint = endpointFromStartup(claim.endpoint, prefix.endpoint);
  const pooled = namedPooled || prefix.pooled;
  if (!endpoint) throw new ConnectionRefused('the connection names no endpoint', '08004', HOW_TO_NAME_AN_ENDPOINT);
  const secret = prefixed ? prefixed.password : password;
  if (prefixed && looksLikeJwt(secret)) return { route: await jwtAuth(secret, endpoint, role, client, line, ctx), pooled };
  line.endpoint = prefixed?.endpoint ?? line.endpoint ?? endpoint;
  const route = await routeFor(endpoint, client, ctx);
  await limited(ctx, endpoint, client, () => checkPassword(route, role, secret));
  return { route, pooled };
}

/** A JWT as the password: the token names the database; with SNI too, they must agree. */
async function jwtAuth(
  token: string, sniEndpoint: string | undefined, role: string, client: string, line: Record<string, unknown>, ctx: ConnectionContext,
): Promise<BranchRoute> {
  // Failures count against the client address, and slow down the endpoint named, else the issuer the token claims:
  // nothing an attacker shares with every other client.
  await ctx.limiter.check(client);
  const target = sniEndpoint ?? `iss:${claimedIssuer(token)}`;
  const grant = await limited(ctx, target, client, () => ctx.core.jwt.verifyConnectionToken(token, { sniEndpointId: sniEndpoint, role }));
  line.endpoint = grant.endpointId;
  line.auth = `jwt:${grant.via}`;
  return grant.route;
}

/** The unverified `iss` of a token, only to pick the limiter's key. */
function claimedIssuer(token: string): string {
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? iss.slice(0, 256) : '(none)';
  } catch {
    return '(malformed)';
  }
}

async function routeFor(endpoint: string, client: string, ctx: ConnectionContext): Promise<BranchRoute> {
  await ctx.limiter.check(client);
  const route = await ctx.core.routes.byEndpoint(endpoint);
  if (!route) {
    await ctx.limiter.failed(endpoint, client);
    throw new ConnectionRefused(`endpoint "${endpoint}" does not exist`, '3D000');
  }
  return route;
}

/** Runs an auth method, counting a wrong password or token (not a client that gave up) against the limits. */
async function limited<T>(ctx: ConnectionContext, target: string, client: string, auth: () => Promise<T>): Promise<T> {
  try {
    return await auth();
  } catch (err) {
    if (err instanceof AuthFailed || err instanceof TokenError) await ctx.limiter.failed(target, client);
    throw err;
  }
}

/** The client's parameters for the compute: same role and database, endpoint= taken out of options. */
export function backendParams(params: Map<string, string>, role: string): Map<string, string> {
  const out = new Map<string, string>([['user', role], ['database', params.get('database') || role]]);
  const options = pgfleetOptions(params.get('options')).rest;
  if (options) out.set('options', options);
  for (const [k, v] of params) if (!NOT_SETTINGS.has(k)) out.set(k, v);
  return out;
}

/** A session on the leased compute; a failure to reach it becomes 57P03 (the details go to the log). */
export function startCompute(lease: Lease, params: Map<string, string>, route: BranchRoute, ctx: ConnectionContext, probeStartup = false): Promise<BackendSession> {
  return connectBackend(lease.address, params, route.endpointId, ctx.core.log, ctx.core.config.wakeTimeoutMs, { probeStartup });
}

/** Tries of a backend start that the compute refuses as full while warm backends of it are closed to make room. */
const FULL_RETRIES = 3;

/**
 * A new backend for a direct session; one that may be kept afterwards has its settings probed at
 * start. A compute full of kept backends (53300) gets room: they are closed and the start tried again.
 */
async function startDirect(lease: Lease, params: Map<string, string>, key: string, route: BranchRoute, ctx: ConnectionContext): Promise<DirectBackend> {
  const keeps = ctx.warm.keeps(lease.address);
  for (let attempt = 1; ; attempt++) {
    try {
      const session = await startCompute(lease, params, route, ctx, keeps);
      return new DirectBackend(session, lease.address, route.branchId, route.databaseId, key);
    } catch (err) {
      const full = err instanceof BackendError && err.sqlstate === '53300';
      if (!full || attempt >= FULL_RETRIES) throw err;
      if (attempt === 1 && ctx.warm.dropBranch(route.branchId) === 0) throw err;
      await new Promise((r) => setTimeout(r, 20 * attempt)); // the closed backends' slots free once they exit
    }
  }
}
