/**
 * The proxy as a client of the compute: open the socket (Unix, or TCP + TLS), start up as
 * the client's role and database, authenticate when the compute asks, and collect what the
 * client must see before the relay (ParameterStatus, notices, ReadyForQuery).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { serialize } from 'pg-protocol';
import type { BackendMessage, BackendKeyDataMessage, DatabaseError } from 'pg-protocol/dist/messages';
import { Parser } from 'pg-protocol/dist/parser';
import type { Logger } from 'pino';
import { ComputeStartError, PgfleetError } from '../src/errors.ts';
import type { ComputeAddress } from '../src/providers/provider.ts';
import { BackendError } from './errors.ts';
import { PacketReader } from './protocol/packet-reader.ts';
import { Interner } from './interner.ts';
import { ScramClient } from './scram-client.ts';
import { STARTUP_PROBE, fingerprintOf, readAnswers } from './session-reset.ts';
import { ENCRYPTION } from './protocol/codes.ts';
import { encodeStartup } from './protocol/startup.ts';
import { ServerParameters } from './protocol/server-parameters.ts';

export interface BackendSession {
  socket: Duplex;
  /** The compute's key for CancelRequest. */
  pid: number;
  secret: number;
  /**
   * What the client is told before BackendKeyData and ReadyForQuery, as the compute sent it
   * (ParameterStatus and NoticeResponse frames), in one buffer: a session keeps it while it lasts.
   */
  greeting: Buffer;
  /** The ParameterStatus values among them, kept up to date while the session lasts. */
  parameters: ServerParameters;
  /** Its answer to STARTUP_PROBE, sent behind the startup packet (when probed). */
  startupFingerprint: string | undefined;
  /** Bytes the compute sent after ReadyForQuery (normally none). */
  rest: Buffer | undefined;
}

function once<T>(emitter: Duplex, event: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    emitter.once('error', onError);
    emitter.once(event, (v: T) => {
      emitter.off('error', onError);
      resolve(v);
    });
  });
}

/** A connected socket to the compute: its Unix socket, TCP upgraded to verified TLS, or through its node. */
export async function openBackendSocket(address: ComputeAddress, opts: { cancel?: boolean } = {}): Promise<Duplex> {
  if (address.kind === 'node') return address.open(opts.cancel ? 'cancel' : 'connect');
  if (address.kind === 'unix') {
    const socket = net.connect(address.socketPath);
    await once(socket, 'connect');
    return socket;
  }
  const socket = net.connect({ host: address.host, port: address.port, noDelay: true });
  try {
    await once(socket, 'connect');
    socket.write(serialize.requestSsl());
    const answer = await once<Buffer>(socket, 'data');
    if (answer.length !== 1 || answer[0] !== ENCRYPTION.accepted) throw new Error('the compute does not accept TLS');
    const secure = tls.connect({
      socket,
      host: address.servername,
      servername: net.isIP(address.servername) ? undefined : address.servername,
      ca: address.ca ? [...tls.rootCertificates, address.ca] : undefined,
    });
    await once(secure, 'secureConnect');
    return secure;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

function parse(frame: Buffer): BackendMessage {
  let message: BackendMessage | undefined;
  new Parser().parse(frame, (m) => (message = m));
  return message!;
}

function backendError(m: DatabaseError): BackendError {
  return new BackendError(m.message, m.code ?? 'XX000', m.severity ?? 'FATAL', m.detail, m.hint);
}

/**
 * Starts a session on the compute. `params` are the startup parameters to send (user and
 * database included). Rejects with BackendError when the compute refuses. `probeStartup` sends
 * STARTUP_PROBE right behind the startup packet (no round trip of its own; only where the
 * compute asks no password, as a local one on its socket) and keeps its answer.
 */
export async function startBackend(address: ComputeAddress, params: Map<string, string>, opts: { probeStartup?: boolean } = {}): Promise<BackendSession> {
  const socket = await openBackendSocket(address);
  socket.on('error', () => {}); // ends in 'close', which the reader (and later the relay) acts on
  const reader = new PacketReader(socket);
  try {
    socket.write(opts.probeStartup ? Buffer.concat([encodeStartup(params), STARTUP_PROBE]) : encodeStartup(params));
    let scram: ScramClient | undefined;
    let key: BackendKeyDataMessage | undefined;
    const frames: Buffer[] = [];
    for (;;) {
      const frame = await reader.readFrame('message from the compute');
      const m = parse(frame);
      switch (m.name) {
        case 'authenticationOk':
          break;
        case 'authenticationCleartextPassword':
          socket.write(serialize.password(passwordFor(address, params)));
          break;
        case 'authenticationSASL':
          scram = new ScramClient(passwordFor(address, params));
          socket.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst));
          break;
        case 'authenticationSASLContinue':
          if (!scram) throw new Error('the compute sent SASLContinue before SASL');
          socket.write(serialize.sendSCRAMClientFinalMessage(await scram.respond((m as unknown as { data: string }).data)));
          break;
        case 'authenticationSASLFinal':
          scram?.verify((m as unknown as { data: string }).data);
          break;
        case 'backendKeyData':
          key = m as BackendKeyDataMessage;
          break;
        case 'error':
          throw backendError(m as DatabaseError);
        case 'parameterStatus':
        case 'notice':
          frames.push(frame);
          break;
        case 'readyForQuery': {
          const greeting = sharedGreeting(frames);
          const parameters = new ServerParameters(greeting);
          const startupFingerprint = opts.probeStartup ? fingerprintOf(await readAnswers(reader, 1, parameters)) : undefined;
          const rest = reader.detach();
          return {
            socket, pid: key?.processID ?? 0, secret: key?.secretKey ?? 0, greeting, parameters,
            startupFingerprint, rest: rest.length > 0 ? rest : undefined,
          };
        }
        default:
          throw new Error(`unexpected message from the compute during startup: ${m.name}`);
      }
    }
  } catch (err) {
    reader.detach();
    socket.destroy();
    throw err;
  }
}

/** Startup answers lately seen, by their bytes. */
const greetings = new Interner<Buffer>(1024);

/**
 * The startup answer's frames in one buffer, shared with every backend that answered the same:
 * the backends of one compute and startup say the same, a greeting is never written to, and idle
 * sessions are many. Its own memory, not a slice of Node's shared pool (a slice would pin a whole slab).
 */
function sharedGreeting(frames: Buffer[]): Buffer {
  const greeting = Buffer.allocUnsafeSlow(frames.reduce((n, f) => n + f.length, 0));
  frames.reduce((at, f) => at + f.copy(greeting, at), 0);
  return greetings.intern(greeting.toString('latin1'), greeting);
}

function passwordFor(address: ComputeAddress, params: Map<string, string>): string {
  const password = address.kind === 'tcp' ? address.passwords.get(params.get('user')!) : undefined;
  if (password === undefined) throw new Error(`the compute asks for a password and none is known for role "${params.get('user')}"`);
  return password;
}

/**
 * startBackend for a client's endpoint: a compute that refuses passes its error on; one that
 * cannot be reached is logged and reads as 57P03 to the client.
 */
export async function connectBackend(
  address: ComputeAddress, params: Map<string, string>, endpointId: string, log: Logger, timeoutMs: number, opts: { probeStartup?: boolean } = {},
): Promise<BackendSession> {
  // A compute that wakes on connect (Neon's proxy starts it) is waited for as long as a wake.
  const started = startBackend(address, params, opts);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ComputeStartError(
      `the compute of endpoint "${endpointId}" did not answer within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
  });
  try {
    return await Promise.race([started, timeout]);
  } catch (err) {
    started.then((late) => late.socket.destroy(), () => {});
    if (err instanceof PgfleetError) throw err;
    log.warn({ endpoint: endpointId, err: (err as Error).message }, 'compute connection failed');
    throw new ComputeStartError(`could not connect to the compute of endpoint "${endpointId}"`);
  } finally {
    clearTimeout(timer);
  }
}
