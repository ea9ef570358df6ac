/**
 * The floor under any gateway written for Node.js: a bare TLS relay in this process, with the same
 * certificate and TLS settings as pgfleet's proxy, that answers the SSLRequest, terminates TLS and
 * pipes the bytes to the compute's Unix socket. No SNI, no SCRAM (the compute admits this process's
 * OS user by peer authentication), no route, no metering, no warm backends (a connection forks a
 * backend). pgfleet's CPU against it is the cost of pgfleet's own work; the floor against PgBouncer's
 * is the cost of Node's TLS and stream layers, which pgfleet cannot go below.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface NodeRelay {
  port: number;
  close(): Promise<void>;
}

export async function startNodeRelay(opts: { cert: string; key: string; socketPath: string }): Promise<NodeRelay> {
  const secureContext = tls.createSecureContext({ cert: opts.cert, key: opts.key, minVersion: 'TLSv1.2' });
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => raw.destroy());
    // The SSLRequest is 8 bytes and comes alone: libpq waits for the answer.
    raw.once('data', () => {
      raw.pause();
      raw.write('S');
      const secure = new tls.TLSSocket(raw, { isServer: true, secureContext });
      const backend = net.connect(opts.socketPath);
      const end = () => {
        secure.destroy();
        backend.destroy();
      };
      for (const socket of [secure, backend]) {
        socket.on('error', end);
        socket.on('close', end);
      }
      secure.pipe(backend);
      backend.pipe(secure);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
