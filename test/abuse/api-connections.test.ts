// Idle sockets against the API port: one address is held to its share, the others keep being
// served, and the total stays under its cap (what the proxy and the computes need is left alone).
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { startApi } from '../api-client.ts';
import { until } from '../helpers.ts';

/** An idle socket from `from` to the API; `closedByServer` resolves if the server closes it. */
function idleSocket(port: number, from: string): Promise<{ socket: net.Socket; closedByServer: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
    const closedByServer = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('connect', () => resolve({ socket, closedByServer }));
    socket.once('error', reject);
  });
}

/** Whether the socket is closed within ms (a generous wait for a close that must come, a short one for one that must not). */
const isClosed = (p: Promise<void>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

function healthz(port: number, from: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/healthz', localAddress: from, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    }).on('error', reject);
  });
}

t.test('per-address and total caps on the API listener', async (t) => {
  const api = await startApi({ PGFLEET_API_MAX_CONNECTIONS_PER_ADDRESS: '5', PGFLEET_API_MAX_CONNECTIONS: '8' });
  t.teardown(() => api.stop());
  const port = Number(new URL(api.url).port);
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));

  const flood = [];
  for (let i = 0; i < 5; i++) flood.push(await idleSocket(port, '127.0.0.1'));
  sockets.push(...flood.map((f) => f.socket));
  const extra = await idleSocket(port, '127.0.0.1');
  sockets.push(extra.socket);
  t.ok(await isClosed(extra.closedByServer, 5000), 'the sixth idle socket from one address is closed at once');
  t.notOk(await isClosed(flood[0]!.closedByServer, 300), 'the first five stay');
  t.equal(await healthz(port, '127.0.0.2'), 200, 'another address is served meanwhile');

  // Up to the total: 5 + 3 from elsewhere; the next one, from a fresh address, is closed.
  for (let i = 0; i < 3; i++) sockets.push((await idleSocket(port, '127.0.0.3')).socket);
  const over = await idleSocket(port, '127.0.0.4');
  sockets.push(over.socket);
  t.ok(await isClosed(over.closedByServer, 5000), 'past the total cap a socket is closed');

  // Freed slots serve again.
  flood.forEach((f) => f.socket.destroy());
  await until('the flood to be let go', async () => (await healthz(port, '127.0.0.1').catch(() => 0)) === 200, 10_000);
  t.pass('the flooding address is served once its sockets are gone');
});
