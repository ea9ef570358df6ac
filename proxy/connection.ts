/**
 * One client connection, top to bottom: startup → endpoint → auth (SCRAM, or a cleartext
 * password or JWT over TLS) → quotas → wake → backend startup → relay, then one log line.
 * The steps are exported one by one: the serverless door (proxy/serverless/) runs the same
 * ones for its WebSocket sessions and its HTTP queries, and a `-pooler` endpoint takes them up
 * to the quotas, then the transaction pooler (proxy/pool/) serves it.
 *
 * A gateway holds many thousands of idle sessions, so the handshake's state (startup packet,
 * SCRAM exchange, timers, the backend's start) lives in functions that have returned by the time
 * the relay runs: a relayed session holds its Connection, its DirectSession and its relay, and no
 * promise: the listener counts it in and the session's end counts it out (proxy/in-flight.ts).
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { BranchRoute } from '../src/catalog/routes.ts';
import type { Lease } from '../src/compute-target.ts';
import { PgfleetError, TokenError } from '../src/errors.ts';
import type { HandshakeProgress } from './admission.ts';
import { authIO } from './auth.ts';
import { type BackendSession, connectBackend } from './backend.ts';
import type { CancelKey } from './cancel.ts';
import type { ConnectionContext } from './context.ts';
import { pgfleetOptions } from './endpoint.ts';
import { AuthFailed, BackendError, ConnectionRefused, ProtocolViolation, Unanswered } from './errors.ts';
import { type Handshake, type WebSocketTransport, readStartup } from './handshake.ts';
import type { InFlight } from './in-flight.ts';
import { type Login, identifyAndAuthenticate } from './login.ts';
import { NOT_SETTINGS } from './protocol/startup.ts';
import { authenticationOk, errorFor } from './protocol/messages.ts';
import type { PacketReader } from './protocol/packet-reader.ts';
import { refusalOf } from './refusal-reason.ts';
import { type RelayEnd, type RelayEndListener, relay } from './relay.ts';
import type { Session } from './session.ts';
import { DirectBackend } from './warm-backends.ts';

/** A client connection over TCP: the Postgres handshake (TLS, SNI), then the shared steps. */
export function handleConnection(raw: net.Socket, ctx: ConnectionContext, inFlight: InFlight, progress?: HandshakeProgress): void {
  raw.setNoDelay(true);
  serveConnection(raw, raw.remoteAddress ?? '', ctx, inFlight, { progress });
}

/** What the door that accepted a connection tells the shared steps. */
export interface ConnectionDoor {
  /** The listener's handshake caps, told when the startup arrived and when auth succeeded. */
  progress?: HandshakeProgress;
  /** A WebSocket's byte stream: the password comes in clear, the host names the endpoint. */
  websocket?: WebSocketTransport;
}

/** Streams ignore errors this way: each ends in 'close', which the step reading it acts on. */
const ignore = () => {};

/** What a connection holds from accept to its log line; all a relayed session keeps of its handshake. */
class Connection {
  readonly started = Date.now();
  readonly line: Record<string, unknown>;
  /** The raw stream, or the TLS socket over it once there is one. */
  client: Duplex;
  authenticated = false;
  lease: Lease | undefined;
  /** The database whose connection caps count this session, until it ends. */
  admittedTo: string | undefined;
  /** Relayed, or served by the pooler (then `line.pooled`, and the pooler reports its end). */
  session: Session | undefined;
  /** The listener's count of connections being served; told once, when this one is done. */
  private inFlight: InFlight | undefined;

  constructor(raw: Duplex, readonly clientAddress: string, websocket: boolean, inFlight: InFlight) {
    this.client = raw;
    this.line = { client: clientAddress };
    if (websocket) this.line.door = 'websocket';
    raw.on('error', ignore);
    this.inFlight = inFlight;
    inFlight.opened();
  }

  /** The client is told why in Postgres's words; a WebSocket closes with the error as its reason. */
  failed(err: unknown, ctx: ConnectionContext): void {
    noteFailure(err, this.line, ctx);
    if (this.client.writable && !(err instanceof Unanswered)) this.client.end(errorFor(err));
    else this.client.destroy(err as Error);
  }

  /** Gives back what it holds, then its log line. */
  end(ctx: ConnectionContext): void {
    this.lease?.release();
    if (this.admittedTo !== undefined) ctx.core.usage.leave(this.admittedTo);
    const { session, line } = this;
    if (session) closeSession(session, line, ctx);
    logConnection(line, session ? (line.pooled ? 'pooled' : 'relayed') : String(line.outcome), this.started, this.authenticated, ctx);
  }

  /** The listener stops counting it (once), told what failed if anything did. */
  settled(err?: unknown): void {
    const inFlight = this.inFlight;
    this.inFlight = undefined;
    inFlight?.settled(err);
  }
}

/**
 * One connection of either door, from startup to its log line: the TCP proxy's socket, or a
 * WebSocket's byte stream. No promise lasts beyond the handshake: the relay settles the connection.
 */
export function serveConnection(raw: Duplex, clientAddress: string, ctx: ConnectionContext, inFlight: InFlight, door: ConnectionDoor = {}): void {
  const conn = new Connection(raw, clientAddress, door.websocket !== undefined, inFlight);
  handshake(conn, raw, ctx, door).then((direct) => {
    if (direct) return relayDirect(conn, direct, ctx);
    if (!conn.session) conn.end(ctx); // with a session, the pooler took the client and ends it
    conn.settled();
  }).catch((err) => conn.settled(err));
}

/** The handshake's steps; a failure is told to the client (and logged) here. */
async function handshake(conn: Connection, raw: Duplex, ctx: ConnectionContext, door: ConnectionDoor): Promise<DirectStart | undefined> {
  try {
    return await establish(conn, raw, ctx, door);
  } catch (err) {
    conn.failed(err, ctx);
    return undefined;
  }
}

/** A direct session ready to relay: its backend has answered the client's startup. */
interface DirectStart {
  backend: DirectBackend;
  key: CancelKey;
  /** The client's reader, whose buffered bytes go to the relay first. */
  reader: PacketReader;
  route: BranchRoute;
  role: string;
}

/**
 * Startup, login and admission within the handshake timeout, then either the pooler takes the
 * client (undefined) or a backend answers its startup. A CancelRequest is carried out and ends here.
 */
async function establish(conn: Connection, raw: Duplex, ctx: ConnectionContext, door: ConnectionDoor): Promise<DirectStart | undefined> {
  const { line } = conn;
  const timer = setTimeout(() => raw.destroy(), ctx.handshakeTimeoutMs);
  let hs: Handshake | undefined;
  let role: string;
  let login: Login;
  try {
    hs = await readStartup(raw, ctx, (secure) => {
      conn.client = secure;
      secure.on('error', ignore);
    }, door.websocket);
    if (!hs) {
      line.outcome = 'cancel_request';
      return undefined;
    }
    door.progress?.startupReceived();
    role = hs.startup.params.get('user')!;
    line.role = role;
    login = await identifyAndAuthenticate(hs, authIO(hs, ctx.peerTimeoutMs), role, conn.clientAddress, line, ctx);
  } finally {
    clearTimeout(timer);
  }
  conn.authenticated = true;
  door.progress?.authenticated();
  if (await admit(login.route, ctx)) conn.admittedTo = login.route.databaseId;
  // SASLFinal and AuthenticationOk go in one write, with the rest of the startup answer when a warm backend has it at once.
  const authAnswer = login.saslFinal ? Buffer.concat([login.saslFinal, authenticationOk()]) : authenticationOk();
  if (login.pooled) {
    await handToPooler(conn, hs, login.route, role, authAnswer, ctx);
    return undefined;
  }
  return openDirect(conn, hs, login.route, role, authAnswer, ctx);
}

/** A `-pooler` endpoint's client goes to the transaction pooler, which reports its end. */
async function handToPooler(conn: Connection, hs: Handshake, route: BranchRoute, role: string, authAnswer: Buffer, ctx: ConnectionContext): Promise<void> {
  conn.client.write(authAnswer);
  conn.line.pooled = true;
  const pooledClient = await ctx.pooler.connect({
    socket: conn.client, route, role, params: hs.startup.params, options: pgfleetOptions(hs.startup.params.get('options')).rest,
    early: hs.reader.detach(), session: newSession(route, role, ignore),
  });
  conn.session = pooledClient;
  openSession(pooledClient, ctx);
  pooledClient.whenEnded((outcome) => {
    conn.line.outcome = outcome;
    conn.end(ctx);
  });
}

/**
 * The compute is leased (woken if asleep) and a backend answers the client's startup: a warm one
 * kept for this startup, else a new one. Without a warm one, the client hears that it got in
 * while its backend starts (or its compute wakes).
 */
async function openDirect(conn: Connection, hs: Handshake, route: BranchRoute, role: string, authAnswer: Buffer, ctx: ConnectionContext): Promise<DirectStart> {
  const params = backendParams(hs.startup.params, role);
  const warmKey = ctx.warm.keyOf(route, params);
  const { client } = conn;
  const kept = ctx.warm.has(warmKey);
  if (!kept) client.write(authAnswer);
  const lease = (conn.lease = await ctx.core.acquire(route));
  let warm = kept ? await ctx.warm.take(warmKey) : undefined;
  if (warm && warm.address !== lease.address) {
    warm.close(); // kept from an earlier run of the compute (it restarted meanwhile)
    warm = undefined;
  }
  // A warm backend answers at once: AuthenticationOk goes with its answer, in one write.
  const authWithAnswer = warm !== undefined;
  if (warm) conn.line.warm = true;
  else if (kept) client.write(authAnswer);
  const backend = warm ?? await startDirect(lease, params, warmKey, route, ctx);
  ctx.core.metrics.backends.inc({ kind: backend.reused ? 'warm' : 'new' });
  let key: CancelKey | undefined;
  try {
    // The client is told its backend's real pid (kept backends included); the secret is fresh.
    key = await ctx.cancels.issue(backend.session.pid, backend);
    const answer = backend.startupAnswer(key);
    client.write(authWithAnswer ? Buffer.concat([authAnswer, answer]) : answer);
    return { backend, key, reader: hs.reader, route, role };
  } catch (err) {
    if (key) ctx.cancels.revoke(key);
    backend.socket.destroy();
    throw err;
  }
}

/** Relays until either side goes (DirectSession.relayEnded ends the connection). Not async: nothing of the handshake stays alive. */
function relayDirect(conn: Connection, start: DirectStart, ctx: ConnectionContext): void {
  const { backend } = start;
  const session = new DirectSession(conn, start, ctx);
  conn.session = session;
  openSession(session, ctx);
  relay(conn.client, backend.socket, session, {
    fromClient: start.reader.detach(), fromCompute: backend.takeRest(), parameters: backend.session.parameters,
    keepIdle: ctx.warm.keeps(backend.address),
  }, session);
}

/**
 * A relayed session: what metering and quotas see, and how it ends. One object with what its end
 * needs, rather than closures over the handshake's frames (idle sessions are many).
 */
class DirectSession implements Session, RelayEndListener {
  readonly endpointId: string;
  readonly branchId: string;
  readonly databaseId: string;
  readonly partnerId: string;
  readonly role: string;
  readonly backendPid: number;
  bytesFromClient = 0;
  bytesToClient = 0;
  private readonly backend: DirectBackend;
  private readonly key: CancelKey;

  constructor(private readonly conn: Connection, start: DirectStart, private readonly ctx: ConnectionContext) {
    const { route } = start;
    this.endpointId = route.endpointId;
    this.branchId = route.branchId;
    this.databaseId = route.databaseId;
    this.partnerId = route.partnerId;
    this.role = start.role;
    this.backend = start.backend;
    this.backendPid = start.backend.session.pid;
    this.key = start.key;
  }

  /** The compute is being suspended (a quota ran out): the client learns why, then the session ends. */
  terminate(reason: PgfleetError): void {
    const { client } = this.conn;
    if (client.writable) client.end(errorFor(reason));
    this.backend.socket.destroy();
  }

  /** The cancel key is revoked, a backend its client left idle is kept for the next one, and the connection ends. */
  relayEnded(end: RelayEnd): void {
    const { conn, ctx } = this;
    conn.line.outcome = end.outcome;
    // Settled either way: the listener's close waits for every connection's end, and logs a failure.
    try {
      ctx.cancels.revoke(this.key);
      if (end.idle) ctx.warm.give(this.backend);
      conn.end(ctx);
      conn.settled();
    } catch (err) {
      conn.settled(err);
    }
  }
}

/**
 * Quotas, then the session counts against the database's connection caps (direct, pooled,
 * WebSocket and HTTP alike, from before the compute is acquired, so sessions waiting for a wake
 * count); whether it was counted (this listener meters), when `usage.leave` must end the count.
 */
export async function admit(route: BranchRoute, ctx: ConnectionContext): Promise<boolean> {
  if (!ctx.metering) return false;
  const overQuota = await ctx.core.usage.check(route);
  if (overQuota) throw overQuota;
  await ctx.core.usage.admit(route, ctx.databaseMaxClientConnections);
  return true;
}

/** A session as metering and quota enforcement see it; `terminate` ends it with a reason. */
export function newSession(route: BranchRoute, role: string, terminate: Session['terminate']): Session {
  return {
    endpointId: route.endpointId, branchId: route.branchId, databaseId: route.databaseId, partnerId: route.partnerId,
    role, bytesFromClient: 0, bytesToClient: 0, terminate,
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
