/**
 * What every listener does with a connection before its protocol sees it (the proxy, the
 * serverless door, the API and the node link alike): a place under fair connection caps
 * (FairCaps), the first bytes within the opening timeout, and from a trusted proxy its PROXY
 * protocol v2 header, whose client address then stands in for the proxy's (in the caps, in
 * `socket.remoteAddress` for everything after). Only then is the socket handed to the server's
 * own 'connection' handling, with what was read put back.
 */
import type net from 'node:net';
import tls from 'node:tls';
import { ListenerRefusal } from '../errors.ts';
import type { FairCaps } from './fair-caps.ts';
import { readOpening } from './opening-bytes.ts';
import type { TrustedProxies } from './trusted-proxies.ts';

export interface GuardOptions {
  /** Open connections of this listener (shared with another listener that draws on the same budget). */
  caps: FairCaps;
  /** Time from accept to the first bytes (and the whole PROXY header). */
  openingTimeoutMs: number;
  /** Peers that must send a PROXY v2 header (and may); nobody else may. */
  trusted?: TrustedProxies;
  /** How this door tells a turned-away client why (default: close without a word). */
  answer?: (socket: net.Socket, refusal: ListenerRefusal) => void;
  /** Every refusal, with the client it names (for sampled logs). */
  refused?: (client: string | undefined, refusal: ListenerRefusal) => void;
}

const noop = () => {};

/**
 * Puts the guard before `server`'s own handling of every connection it accepts (its
 * 'connection' event is held back until the guard is done); closing the server also closes
 * the connections the guard still holds.
 */
export function guardListener(server: net.Server, opts: GuardOptions): void {
  const emit = server.emit.bind(server);
  const guarding = new Set<net.Socket>();
  server.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
    if (event !== 'connection') return emit(event, ...args);
    const socket = args[0] as net.Socket;
    guarding.add(socket);
    void admit(socket, opts, server instanceof tls.Server, () => emit('connection', socket)).finally(() => guarding.delete(socket));
    return true;
  }) as net.Server['emit'];
  const close = server.close.bind(server);
  server.close = ((callback?: (err?: Error) => void) => {
    for (const socket of guarding) socket.destroy();
    return close(callback);
  }) as net.Server['close'];
  // A TLS server wraps the socket: the TLS socket reports the client the guard settled on.
  server.on('secureConnection', (secure: tls.TLSSocket & { _parent?: net.Socket }) => {
    const raw = secure._parent;
    if (raw && Object.hasOwn(raw, 'remoteAddress')) pretendPeer(secure, raw.remoteAddress);
  });
}

function pretendPeer(socket: net.Socket, address: string | undefined): void {
  Object.defineProperty(socket, 'remoteAddress', { value: address, configurable: true });
}

async function admit(socket: net.Socket, opts: GuardOptions, wrapsTls: boolean, handOff: () => void): Promise<void> {
  socket.on('error', noop); // until the server's own handlers are on
  const peer = socket.remoteAddress;
  const proxied = opts.trusted?.has(peer) ?? false;
  let client = peer;
  const refuse = (refusal: ListenerRefusal) => {
    opts.refused?.(client, refusal);
    if (socket.destroyed) return;
    if (opts.answer && !refusal.silent) opts.answer(socket, refusal);
    else socket.destroy();
  };
  // The proxy itself is exempt from the per-address rules until its header names the client.
  let place = opts.caps.take(peer, proxied);
  if (!place.ok) return refuse(new ListenerRefusal(place.reason));
  // The release itself listens (not a closure over this function: a connection holds it as long as it lasts).
  let release = place.release;
  socket.on('close', release);
  try {
    const opening = await readOpening(socket, proxied, opts.openingTimeoutMs);
    if (opening.client !== undefined) {
      client = opening.client;
      release();
      socket.off('close', release);
      place = opts.caps.take(client);
      if (!place.ok) return refuse(new ListenerRefusal(place.reason));
      release = place.release;
      socket.on('close', release);
      if (socket.destroyed) release();
      pretendPeer(socket, client);
    }
    if (opening.rest.length > 0) socket.unshift(opening.rest);
  } catch (err) {
    return refuse(err instanceof ListenerRefusal ? err : new ListenerRefusal(String(err), '08P01'));
  }
  handOff();
  // A TLS server's socket reads the connection itself; any other reads through the paused socket.
  if (!wrapsTls) socket.resume();
}

/** A refusal as a whole HTTP answer, for the HTTP listeners (the API, the serverless door), then the close. */
export function answerInHttp(socket: net.Socket, refusal: ListenerRefusal, body = `${refusal.message}\n`, type = 'text/plain'): void {
  const status = refusal.httpStatus === 503 ? '503 Service Unavailable' : '400 Bad Request';
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, () => socket.destroy());
}
