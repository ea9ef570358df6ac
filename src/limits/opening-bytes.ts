/**
 * The first bytes of an accepted connection, read before its protocol begins: from a trusted
 * proxy, a PROXY protocol v2 header (parsed by proxy-protocol-js) naming the client behind it;
 * from anyone else, enough to tell that no PROXY header is there (every protocol pgfleet serves
 * differs from one in its first byte). A peer that sends nothing within the timeout is closed.
 */
import type net from 'node:net';
import { Command, IPv4ProxyAddress, IPv6ProxyAddress, V2ProxyProtocol } from 'proxy-protocol-js';
import { ListenerRefusal } from '../errors.ts';

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const V1_SIGNATURE = Buffer.from('PROXY ', 'latin1');
/** Addresses and the TLVs a balancer adds (HAProxy's are tens of bytes); more is not a header we take. */
const MAX_V2_BODY = 1024;

export interface Opening {
  /** The client a trusted proxy names (undefined: its own health check, a LOCAL header). */
  client: string | undefined;
  /** What came after the header (or everything read, without one), to be read again. */
  rest: Buffer;
}

/** Whether `buf` starts like `signature` (as far as both go). */
const startsLike = (buf: Buffer, signature: Buffer) => buf.subarray(0, signature.length).equals(signature.subarray(0, Math.min(buf.length, signature.length)));

/** What the bytes so far say: undefined = read more. */
function decide(buf: Buffer, proxied: boolean): Opening | undefined {
  if (!proxied) {
    if (startsLike(buf, V2_SIGNATURE) || startsLike(buf, V1_SIGNATURE)) {
      if (buf.length >= V2_SIGNATURE.length || (buf.length >= V1_SIGNATURE.length && startsLike(buf, V1_SIGNATURE))) {
        throw new ListenerRefusal('a PROXY protocol header from an address that is not a trusted proxy (PGFLEET_TRUSTED_PROXIES)', '08P01');
      }
      return undefined;
    }
    return { client: undefined, rest: buf };
  }
  if (!startsLike(buf, V2_SIGNATURE)) throw new ListenerRefusal('a trusted proxy must open with a PROXY protocol v2 header', '08P01');
  if (buf.length < 16) return undefined;
  const length = buf.readUInt16BE(14);
  if (length > MAX_V2_BODY) throw new ListenerRefusal(`PROXY protocol header too long (${length} bytes)`, '08P01');
  if (buf.length < 16 + length) return undefined;
  let header: V2ProxyProtocol;
  try {
    header = V2ProxyProtocol.parse(buf.subarray(0, 16 + length));
  } catch (err) {
    throw new ListenerRefusal(`malformed PROXY protocol header: ${(err as Error).message}`, '08P01');
  }
  return { client: header.command === Command.PROXY ? sourceOf(header) : undefined, rest: buf.subarray(16 + length) };
}

function sourceOf(header: V2ProxyProtocol): string | undefined {
  const a = header.proxyAddress;
  if (a instanceof IPv4ProxyAddress) return a.sourceAddress.address.join('.');
  if (a instanceof IPv6ProxyAddress) {
    const b = a.sourceAddress.address;
    return Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)).join(':');
  }
  return undefined; // UNIX or UNSPEC: no client address to count
}

/** Reads the opening of `socket`, which is left paused with nothing consumed beyond the header. */
export function readOpening(socket: net.Socket, proxied: boolean, timeoutMs: number): Promise<Opening> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const finish = (err: Error | undefined, opening?: Opening) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      if (err) reject(err);
      else resolve(opening!);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      try {
        const opening = decide(buf, proxied);
        if (opening) finish(undefined, opening);
      } catch (err) {
        finish(err as Error);
      }
    };
    const onClose = () => finish(new ListenerRefusal('closed before sending anything', '53300', true));
    const timer = setTimeout(() => finish(new ListenerRefusal(`sent ${proxied ? 'no complete PROXY header' : 'nothing'} within ${timeoutMs / 1000} s`, '53300', true)), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}
