/**
 * The startup phase up to a protocol 3 startup packet: SSLRequest → TLS, a TLS ClientHello as
 * the first bytes → direct TLS (Postgres 17's sslnegotiation=direct, ALPN `postgresql`
 * required), GSSENCRequest → refused, CancelRequest → forwarded. Reads are bounded; anything
 * malformed throws 08P01. A WebSocket arrives already encrypted (or plain, when allowed) by its
 * HTTP listener, so an SSLRequest on it is refused like GSSENCRequest.
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { CancelKeys } from './cancel.ts';
import { ClientLeft, ConnectionRefused, ProtocolViolation, TlsHandshakeFailed } from './errors.ts';
import { TERMINATE, encryptionResponse, negotiateProtocolVersion } from './protocol/messages.ts';
import { PacketReader } from './protocol/packet-reader.ts';
import { type StartupPacket, decodeStartup } from './protocol/startup.ts';

export type Startup = Extract<StartupPacket, { kind: 'startup' }>;

export interface Handshake {
  socket: Duplex;
  reader: PacketReader;
  /** The TLS server name the client sent (SNI), when the connection is TLS. */
  tls: { servername: string | undefined } | undefined;
  startup: Startup;
  /**
   * The connection came over a WebSocket: its TLS is the WebSocket's, the password is asked in
   * clear (the serverless driver pipelines one), and `host` names the endpoint instead of SNI.
   */
  websocket?: WebSocketTransport;
}

export interface WebSocketTransport {
  /** The host the client asked for (Host header, or the `address` of a WebSocket proxy URL). */
  host: string | undefined;
  /** The WebSocket itself is TLS (wss). */
  secure: boolean;
}

export interface HandshakeOptions {
  secureContext: tls.SecureContext;
  allowPlaintext: boolean;
  cancels: CancelKeys;
}

/** The ALPN protocol id of Postgres (registered with IANA for Postgres 17's direct TLS). */
export const ALPN_POSTGRESQL = 'postgresql';
/** The ALPN choice: `postgresql` when offered, else none (the handshake fails with no_application_protocol). */
const choosePostgresql = ({ protocols }: { protocols: string[] }) => (protocols.includes(ALPN_POSTGRESQL) ? ALPN_POSTGRESQL : undefined);
/** A TLS record of type handshake: what a ClientHello starts with (a startup packet's first byte is 0). */
const TLS_HANDSHAKE_RECORD = 0x16;
// Frontend Terminate ('X', length 4).

async function upgradeToTls(raw: net.Socket, secureContext: tls.SecureContext): Promise<tls.TLSSocket> {
  // ALPN is offered on both paths; a client that asks for another protocol gets the
  // no_application_protocol alert, as from Postgres 17. (A callback, not ALPNProtocols: Node
  // copies that list into a small buffer per socket, which pins a pool slab for the session.)
  const secure = new tls.TLSSocket(raw, { isServer: true, secureContext, ALPNCallback: choosePostgresql });
  let reason = 'the client closed the connection';
  const noted = (err: Error & { code?: string }) => (reason = err.code ? `${err.code}: ${err.message.split('\n')[0]}` : err.message);
  secure.on('error', noted); // ends in 'close'; the handshake's outcome is reported below
  await new Promise<void>((resolve, reject) => {
    const failed = () => {
      secure.off('secure', succeeded);
      reject(new TlsHandshakeFailed(reason));
    };
    const succeeded = () => {
      secure.off('close', failed);
      resolve();
    };
    secure.once('secure', succeeded);
    secure.once('close', failed);
  });
  return secure;
}

/**
 * Resolves with the startup packet, or undefined when the connection was a CancelRequest.
 * `encrypted` hears of the TLS socket as soon as there is one, so that an error is sent over it.
 */
export async function readStartup(
  raw: Duplex, opts: HandshakeOptions, encrypted: (secure: tls.TLSSocket) => void, websocket?: WebSocketTransport,
): Promise<Handshake | undefined> {
  let socket: Duplex = raw;
  let reader = new PacketReader(raw);
  let secure: tls.TLSSocket | undefined;
  if (!websocket && (await reader.peek()) === TLS_HANDSHAKE_RECORD) {
    raw.unshift(reader.detach()); // the TLS socket reads the ClientHello from the raw socket
    secure = await upgradeToTls(raw as net.Socket, opts.secureContext);
    encrypted(secure);
    socket = secure;
    reader = new PacketReader(secure);
    if (secure.alpnProtocol !== ALPN_POSTGRESQL) {
      throw new ProtocolViolation('received direct SSL connection request without ALPN protocol negotiation extension');
    }
  }
  for (;;) {
    const packet = decodeStartup(await reader.readStartup());
    switch (packet.kind) {
      case 'ssl':
        if (websocket) {
          socket.write(encryptionResponse(false));
          break;
        }
        if (secure) throw new ProtocolViolation('SSLRequest on an encrypted connection');
        if (reader.pending > 0) {
          // A client that gave up at once (node-postgres connect() then end()) sends its
          // Terminate right behind: Postgres closes without a word, and so does pgfleet.
          if (reader.pending === TERMINATE.length && reader.detach().equals(TERMINATE)) throw new ClientLeft('the client ended during SSL negotiation');
          throw new ProtocolViolation('received unencrypted data after SSL request');
        }
        reader.detach();
        raw.write(encryptionResponse(true));
        secure = await upgradeToTls(raw as net.Socket, opts.secureContext);
        encrypted(secure);
        socket = secure;
        reader = new PacketReader(secure);
        break;
      case 'gssenc':
        if (secure) throw new ProtocolViolation('GSSENCRequest on an encrypted connection');
        socket.write(encryptionResponse(false));
        break;
      case 'cancel':
        reader.detach();
        await opts.cancels.cancel(packet).catch(() => false);
        socket.end();
        return undefined;
      case 'startup':
        if (!secure && !websocket?.secure && !opts.allowPlaintext) {
          throw new ConnectionRefused('pgfleet accepts only TLS connections', '28000',
            'Connect with sslmode=require (or sslmode=verify-full with the pgfleet CA as sslrootcert).');
        }
        if (packet.minor > 0 || packet.protocolOptions.length > 0) {
          socket.write(negotiateProtocolVersion(0, packet.protocolOptions));
        }
        if (websocket) return { socket, reader, tls: undefined, startup: packet, websocket };
        return { socket, reader, tls: secure ? { servername: secure.servername || undefined } : undefined, startup: packet };
    }
  }
}
