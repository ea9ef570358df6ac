/**
 * One client connection, top to bottom: startup → endpoint → auth (SCRAM, or a cleartext
 * password or JWT over TLS) → quotas → wake → backend startup → relay, then one log line.
 * A `-pooler` endpoint takes the same steps up to the quotas, then the pooler serves it.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { type BranchRoute, routeByEndpoint } from '../src/catalog/routes.ts';
import type { Lease } from '../src/computes.ts';
import { PgfleetError, TokenError } from '../src/errors.ts';
import type { Core } from '../src/gateway.ts';
import { looksLikeJwt } from '../src/jwt/looks-like-jwt.ts';
import type { AuthLimiter } from './auth-limiter.ts';
import { checkPassword, readCleartextPassword, scramAuth } from './auth.ts';
import { connectBackend } from './backend.ts';
import { HOW_TO_NAME_AN_ENDPOINT, endpointFromPassword, endpointFromSni, endpointFromStartup, pgfleetOptions, poolerEndpoint } from './endpoint.ts';
import { AuthFailed, ConnectionRefused } from './errors.ts';
import { type Handshake, type HandshakeOptions, readStartup } from './handshake.ts';
import { authenticationOk, backendKeyData, errorFor } from './messages.ts';
import type { Pooler } from './pool/pooler.ts';
import { relay } from './relay.ts';
import type { AuthIO } from './scram.ts';
import type { Session } from './session.ts';

export interface ConnectionContext extends HandshakeOptions {
  core: Core;
  /** tls-server-end-point hash of the proxy's certificate. */
  channelBinding: Buffer;
  limiter: AuthLimiter;
  sessions: Set<Session>;
  /** Time allowed from accept to the end of authentication. */
  handshakeTimeoutMs: number;
  /** Sessions count as usage and quotas hold. */
  metering: boolean;
  /** Serves `-pooler` endpoints. */
  pooler: Pooler;
}

/** An authenticated client: whose database, as which role, pooled or not. */
export interface AuthenticatedClient {
  route: BranchRoute;
  role: string;
  /** Named through `<endpoint>-pooler`: served by the transaction pooler. */
  pooled: boolean;
}

/** Startup parameters never passed to the compute. */
const WITHHELD = new Set(['user', 'database', 'options', 'replication']);
const PASSWORD_MESSAGE = 0x70; // 'p'

export async function handleConnection(raw: net.Socket, ctx: ConnectionContext): Promise<void> {
  const started = Date.now();
  const line: Record<string, unknown> = { client: raw.remoteAddress };
  raw.setNoDelay(true);
  raw.on('error', () => {});
  let client: Duplex = raw;
  let lease: Lease | undefined;
  let session: Session | undefined;
  const timer = setTimeout(() => raw.destroy(), ctx.handshakeTimeoutMs);
  try {
    const hs = await readStartup(raw, ctx);
    if (!hs) {
      line.outcome = 'cancel request';
      return;
    }
    client = hs.socket;
    client.on('error', () => {});
    const authenticated = await authenticateClient(hs, raw.remoteAddress ?? '', line, ctx);
    clearTimeout(timer);
    const { route, role } = authenticated;
    client.write(authenticationOk());
    const sessionFields = {
      endpointId: route.endpointId, branchId: route.branchId, databaseId: route.databaseId, partnerId: route.partnerId,
      role, clientAddress: raw.remoteAddress ?? '', startedAt: new Date(started),
    };

    if (authenticated.pooled) {
      line.pooled = true;
      const pooled = await ctx.pooler.connect({
        socket: client, route, role, params: hs.startup.params, options: pgfleetOptions(hs.startup.params.get('options')).rest,
        early: hs.reader.detach(), session: { ...sessionFields, bytesFromClient: 0, bytesToClient: 0 },
      });
      session = pooled;
      openSession(session, ctx);
      line.outcome = await pooled.ended;
      return;
    }

    lease = await ctx.core.computes.acquire(ctx.core.targetFor(route));
    const backend = await connectBackend(lease.address, backendParams(hs, role), route.endpointId, ctx.core.log);
    const key = ctx.cancels.issue(lease.address, backend.pid, backend.secret);
    try {
      const frames = backend.frames;
      client.write(Buffer.concat([...frames.slice(0, -1), backendKeyData(key.pid, key.secret), frames.at(-1)!]));
      const early = hs.reader.detach();
      if (early.length > 0) backend.socket.write(early);
      if (backend.rest.length > 0) client.write(backend.rest);
      const relayed: Session = {
        ...sessionFields, bytesFromClient: early.length, bytesToClient: 0,
        // The compute is being suspended (a quota ran out): the client learns why, then the session ends.
        terminate: (reason) => {
          if (client.writable) client.end(errorFor(reason));
          backend.socket.destroy();
        },
      };
      session = relayed;
      openSession(session, ctx);
      line.outcome = await relay(client, backend.socket, session);
    } finally {
      ctx.cancels.revoke(key.pid);
    }
  } catch (err) {
    line.outcome = err instanceof PgfleetError ? err.code : 'error';
    if (!(err instanceof PgfleetError)) line.err = (err as Error).message;
    if (err instanceof AuthFailed || err instanceof TokenError) ctx.core.metrics.authFailures.inc({ reason: err instanceof TokenError ? 'token' : 'password' });
    else if (err instanceof ConnectionRefused && err.sqlstate === '28000') ctx.core.metrics.authFailures.inc({ reason: 'refused' });
    if (client.writable) client.end(errorFor(err));
    else client.destroy();
  } finally {
    clearTimeout(timer);
    lease?.release();
    if (session) {
      closeSession(session, ctx);
      ctx.core.metrics.bytes.inc({ direction: 'from_client' }, session.bytesFromClient);
      ctx.core.metrics.bytes.inc({ direction: 'to_client' }, session.bytesToClient);
      line.bytes_in = session.bytesFromClient;
      line.bytes_out = session.bytesToClient;
    }
    ctx.core.metrics.connections.inc({ outcome: session ? 'relayed' : String(line.outcome) });
    line.duration_ms = Date.now() - started;
    ctx.core.log.info(line, 'connection');
  }
}

/** A session starts counting: live sessions (quota suspends reach it) and metering. */
function openSession(session: Session, ctx: ConnectionContext): void {
  ctx.sessions.add(session);
  if (ctx.metering) ctx.core.usage.openSession(session);
}

function closeSession(session: Session, ctx: ConnectionContext): void {
  ctx.sessions.delete(session);
  if (ctx.metering) ctx.core.usage.closeSession(session);
}

/**
 * The steps every door takes before serving a client: find its endpoint, authenticate the
 * role on it, check the database's quotas. Throws the ErrorResponse-ready error otherwise.
 */
export async function authenticateClient(
  hs: Handshake, clientAddress: string, line: Record<string, unknown>, ctx: ConnectionContext,
): Promise<AuthenticatedClient> {
  const role = hs.startup.params.get('user')!;
  line.role = role;
  const { route, pooled } = await identifyAndAuthenticate(hs, authIO(hs), role, clientAddress, line, ctx);
  const overQuota = ctx.metering ? await ctx.core.usage.check(route) : undefined;
  if (overQuota) throw overQuota;
  return { route, role, pooled };
}

function authIO(hs: Handshake): AuthIO {
  return {
    send: (message) => hs.socket.write(message),
    read: (what) => hs.reader.readMessage(PASSWORD_MESSAGE, what),
  };
}

/**
 * Finds the endpoint and authenticates the role on it. A named endpoint (SNI or options) means
 * SCRAM, unless options say `auth=jwt`. Otherwise, over TLS, a cleartext password is asked for:
 * a JWT (which names its database itself) or `endpoint=<id>;<password>`.
 */
async function identifyAndAuthenticate(
  hs: Handshake, io: AuthIO, role: string, client: string, line: Record<string, unknown>, ctx: ConnectionContext,
): Promise<{ route: BranchRoute; pooled: boolean }> {
  const options = pgfleetOptions(hs.startup.params.get('options'));
  const named = endpointFromStartup(endpointFromSni(hs.tls?.servername, ctx.core.config.domain), options.endpoint);
  line.endpoint = named;
  const { endpoint, pooled } = named ? poolerEndpoint(named) : { endpoint: undefined, pooled: false };
  if (endpoint && !options.jwt) {
    const route = await routeFor(endpoint, client, ctx);
    await limited(ctx, endpoint, client, () => scramAuth(io, route, role, hs.tls ? ctx.channelBinding : undefined));
    return { route, pooled };
  }
  if (!hs.tls) {
    throw options.jwt
      ? new ConnectionRefused('a JWT is only accepted over TLS', '28000')
      : new ConnectionRefused('the connection names no endpoint', '08004', HOW_TO_NAME_AN_ENDPOINT);
  }
  const password = await readCleartextPassword(io);
  if (looksLikeJwt(password)) return { route: await jwtAuth(password, endpoint, role, client, line, ctx), pooled };
  if (options.jwt) throw new TokenError('the password is not a JWT', 'auth=jwt was given but the password does not look like a JWT');
  const prefixed = endpointFromPassword(password);
  if (!prefixed) throw new ConnectionRefused('the connection names no endpoint', '08004', HOW_TO_NAME_AN_ENDPOINT);
  line.endpoint = prefixed.endpoint;
  const target = poolerEndpoint(prefixed.endpoint);
  const route = await routeFor(target.endpoint, client, ctx);
  await limited(ctx, target.endpoint, client, () => checkPassword(route, role, prefixed.password));
  return { route, pooled: target.pooled };
}

/** A JWT as the password: the token names the database; with SNI too, they must agree. */
async function jwtAuth(
  token: string, sniEndpoint: string | undefined, role: string, client: string, line: Record<string, unknown>, ctx: ConnectionContext,
): Promise<BranchRoute> {
  // Failures count against the client address (and the endpoint, when one is named).
  const limitKey = sniEndpoint ?? 'jwt';
  ctx.limiter.check(limitKey, client);
  const grant = await limited(ctx, limitKey, client, () => ctx.core.jwt.verifyConnectionToken(token, { sniEndpointId: sniEndpoint, role }));
  line.endpoint = grant.endpointId;
  line.auth = `jwt:${grant.via}`;
  return grant.route;
}

async function routeFor(endpoint: string, client: string, ctx: ConnectionContext): Promise<BranchRoute> {
  ctx.limiter.check(endpoint, client);
  const route = await routeByEndpoint(ctx.core.catalog, endpoint);
  if (!route) {
    ctx.limiter.failed(endpoint, client);
    throw new ConnectionRefused(`endpoint "${endpoint}" does not exist`, '3D000');
  }
  return route;
}

/** Runs an auth method, counting a wrong password or token (not a client that gave up) against the limits. */
async function limited<T>(ctx: ConnectionContext, endpoint: string, client: string, auth: () => Promise<T>): Promise<T> {
  try {
    return await auth();
  } catch (err) {
    if (err instanceof AuthFailed || err instanceof TokenError) ctx.limiter.failed(endpoint, client);
    throw err;
  }
}

/** The client's parameters for the compute: same role and database, endpoint= taken out of options. */
function backendParams(hs: Handshake, role: string): Map<string, string> {
  const p = hs.startup.params;
  const out = new Map<string, string>([['user', role], ['database', p.get('database') || role]]);
  const options = pgfleetOptions(p.get('options')).rest;
  if (options) out.set('options', options);
  for (const [k, v] of p) if (!WITHHELD.has(k)) out.set(k, v);
  return out;
}
