/**
 * The API listener's share of descriptors: at most `total` connections at once, and at most
 * `perAddress` from one client address (an IPv6 /64), so that idle sockets from one address can
 * neither use up the descriptors the proxy and the computes need nor crowd out other partners.
 * A connection past a cap is closed at once, before any byte is read.
 */
import type net from 'node:net';
import { AddressCounts } from '../src/limits/address-counts.ts';

export interface ConnectionCaps {
  total: number;
  perAddress: number;
}

export function capConnections(server: net.Server, caps: ConnectionCaps): void {
  // Past maxConnections, Node accepts and closes the socket itself.
  server.maxConnections = caps.total;
  const open = new AddressCounts();
  server.on('connection', (socket: net.Socket) => {
    const release = open.take(socket.remoteAddress, caps.perAddress);
    if (release) socket.once('close', release);
    else socket.destroy();
  });
}
