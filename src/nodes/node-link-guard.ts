/**
 * The node link listener's caps (src/limits/listener-guard.ts): its connections within its half
 * of the descriptor budget, the opening and TLS handshake timeouts, and connections still in
 * their TLS-PSK handshake capped in all and per address. Only other gateways, which hold the
 * fleet's key, get past the handshake; they are not capped per address (a gateway relays many
 * sessions), only in total.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import type { Config } from '../config.ts';
import { clientConnectionBudget, raiseFdLimit } from '../fd-limit.ts';
import { FairCaps } from '../limits/fair-caps.ts';
import { guardListener } from '../limits/listener-guard.ts';

export interface NodeLinkLimits {
  maxConnections: number;
  maxHandshakes: number;
  maxHandshakesPerAddress: number;
  /** Accept to first bytes, then the TLS handshake, then the request line: each within this. */
  timeoutMs: number;
}

export function nodeLinkLimits(config: Config): NodeLinkLimits {
  const { maxHandshakes, maxHandshakesPerAddress, startupTimeoutMs } = config.proxyLimits;
  const maxConnections = clientConnectionBudget(raiseFdLimit(), { maxComputes: config.maxComputes, apiMaxConnections: config.apiMaxConnections, nodeLink: true });
  return { maxConnections, maxHandshakes, maxHandshakesPerAddress, timeoutMs: startupTimeoutMs };
}

export function guardNodeLink(server: tls.Server, limits: NodeLinkLimits): void {
  guardListener(server, {
    caps: new FairCaps({ total: limits.maxConnections, perAddress: limits.maxConnections }, 'node link connections'),
    openingTimeoutMs: limits.timeoutMs,
  });
  const handshakes = new FairCaps({ total: limits.maxHandshakes, perAddress: limits.maxHandshakesPerAddress }, 'node link handshakes');
  const inHandshake = new WeakMap<net.Socket, () => void>();
  server.on('connection', (raw: net.Socket) => {
    const place = handshakes.take(raw.remoteAddress);
    if (!place.ok) {
      raw.destroy();
      return;
    }
    inHandshake.set(raw, place.release);
    raw.once('close', place.release);
  });
  server.on('secureConnection', (secure: tls.TLSSocket & { _parent?: net.Socket }) => {
    if (secure._parent) inHandshake.get(secure._parent)?.();
  });
}
