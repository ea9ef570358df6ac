import { ConnectionRefused, ProtocolViolation } from '../errors.ts';
import { PROTOCOL_MAJOR, REQUEST_CODE } from './codes.ts';


/**
 * Startup parameters that are no settings of the compute: pgfleet's own, and libpq's
 * client-side keywords, which postgres.js sends as startup parameters when they are in its URL
 * (pgfleet's URIs carry sslrootcert) and a compute would refuse as unknown settings.
 */
export const NOT_SETTINGS: ReadonlySet<string> = new Set([
  'user', 'database', 'options', 'replication',
  'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslcrl', 'sslcrldir', 'sslpassword', 'sslsni', 'sslnegotiation',
  'channel_binding', 'require_auth', 'target_session_attrs', 'connect_timeout', 'hostaddr', 'gssencmode', 'uselibpqcompat',
]);

/** What a client can open a connection with. */
export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | {
      kind: 'startup';
      /** The 3.x minor version the client asked for. */
      minor: number;
      /** Every parameter except protocol options, in the order sent. */
      params: Map<string, string>;
      /** `_pq_.*` protocol options, which this server does not support. */
      protocolOptions: string[];
    };

/** Decodes a startup-phase packet (the part after its length word). */
export function decodeStartup(packet: Buffer): StartupPacket {
  const code = packet.readUInt32BE(0);
  if (code === REQUEST_CODE.ssl || code === REQUEST_CODE.gssenc) {
    if (packet.length !== 4) throw new ProtocolViolation('invalid length of encryption request');
    return { kind: code === REQUEST_CODE.ssl ? 'ssl' : 'gssenc' };
  }
  if (code === REQUEST_CODE.cancel) {
    if (packet.length !== 12) throw new ProtocolViolation('invalid length of cancel request');
    return { kind: 'cancel', pid: packet.readUInt32BE(4), secret: packet.readUInt32BE(8) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== PROTOCOL_MAJOR) {
    throw new ConnectionRefused(`unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`, '0A000');
  }
  const { params, protocolOptions } = decodeParams(packet.subarray(4));
  if (!params.get('user')) throw new ConnectionRefused('no PostgreSQL user name specified in startup packet', '28000');
  return { kind: 'startup', minor, params, protocolOptions };
}

function decodeParams(body: Buffer): { params: Map<string, string>; protocolOptions: string[] } {
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let at = 0;
  const cstring = (): string => {
    const end = body.indexOf(0, at);
    if (end < 0) throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
    const s = body.toString('utf8', at, end);
    at = end + 1;
    return s;
  };
  for (;;) {
    const key = cstring();
    if (key === '') break;
    const value = cstring();
    if (key.startsWith('_pq_.')) protocolOptions.push(key);
    else params.set(key, value);
  }
  if (at !== body.length) throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
  return { params, protocolOptions };
}

/**
 * A protocol 3.0 startup packet. Written here rather than with pg-protocol's serializer,
 * which appends client_encoding=UTF8 and would override the client's own choice.
 */
export function encodeStartup(params: Map<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.alloc(8)];
  for (const [k, v] of params) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(PROTOCOL_MAJOR << 16, 4);
  return out;
}
