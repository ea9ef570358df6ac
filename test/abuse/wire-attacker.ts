// A client that speaks just enough of the wire protocol to attack from a chosen loopback
// address (psql cannot pick its source address): TLS, a startup packet, a cleartext password.
import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';

export interface Attempt {
  port: number;
  /** Source address, e.g. 127.0.0.2 (any of 127/8 works on Linux). */
  from: string;
  user: string;
  /** Sent as the cleartext password: `endpoint=<ep>;<password>`, or a JWT. */
  password: string;
}

/** Connects from `from`, answers the cleartext password request; resolves 'ok' or the server's error message. */
export async function attempt(a: Attempt): Promise<string> {
  const raw = net.connect({ port: a.port, host: '127.0.0.1', localAddress: a.from });
  raw.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', reject);
    });
    const reply = await firstBytes(raw, serialize.requestSsl(), 1);
    if (reply[0] !== 0x53) return errorText(Buffer.concat([reply, await rest(raw)]));
    const secure = tls.connect({ socket: raw, rejectUnauthorized: false, servername: undefined });
    secure.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('close', () => reject(new Error('TLS closed')));
    });
    let answer = await firstBytes(secure, serialize.startup({ user: a.user, database: 'app' }), 9);
    if (answer[0] === 0x52 && answer.readUInt32BE(5) === 3) {
      answer = await firstBytes(secure, serialize.password(a.password), 5);
    }
    if (answer[0] === 0x52 && answer.readUInt32BE(5) === 0) {
      secure.destroy();
      return 'ok';
    }
    const text = errorText(Buffer.concat([answer, await rest(secure)]));
    secure.destroy();
    return text;
  } finally {
    raw.destroy();
  }
}

/** Writes `message`, resolves once at least n bytes came back (or the socket ended). */
function firstBytes(socket: net.Socket | tls.TLSSocket, message: Buffer, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= n) done();
    };
    const done = () => {
      socket.off('data', onData);
      socket.off('close', done);
      resolve(got);
    };
    socket.on('data', onData);
    socket.once('close', done);
    socket.write(message);
  });
}

/** What is left until the server closes. */
function rest(socket: net.Socket | tls.TLSSocket): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    if (socket.destroyed) return resolve(Buffer.alloc(0));
    socket.on('data', (c: Buffer) => parts.push(c));
    socket.once('close', () => resolve(Buffer.concat(parts)));
    setTimeout(() => socket.destroy(), 10_000).unref();
  });
}

/** The M (message) field of an ErrorResponse, or a description of what came. */
export function errorText(frame: Buffer): string {
  if (frame[0] !== 0x45) return `unexpected reply 0x${(frame[0] ?? 0).toString(16)}`;
  const body = frame.subarray(5, 1 + frame.readUInt32BE(1));
  for (const field of body.toString('utf8').split('\0')) if (field.startsWith('M')) return field.slice(1);
  return 'error without message';
}
