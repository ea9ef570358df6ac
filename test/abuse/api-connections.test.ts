// Idle sockets against the API port: one address is held to its share, the others keep being
// served, and the total stays under its cap (what the proxy and the computes need is left alone).
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { startApi } from '../api-client.ts';
import { until } from '../helpers.ts';

/** An idle socket from `from` to the API; `closedByServer` resolves if the server closes it. */
function idleSocket(port: number, from: string, firstByte = false): Promise<{ socket: net.Socket; closedByServer: Promise<void>; reply: () => string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
    let reply = '';
    socket.on('data', (d) => (reply += d));
    const closedByServer = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('connect', () => {
      if (firstByte) socket.write('G'); // a request begun, never finished
      resolve({ socket, closedByServer, reply: () => reply });
    });
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

t.test('per-address and total caps on the API listener, room kept for new addresses, idle sockets closed', async (t) => {
  // 20 in all: 2 (a tenth) kept for addresses holding fewer than one each; 8 from one address.
  const api = await startApi({ PGFLEET_API_MAX_CONNECTIONS_PER_ADDRESS: '8', PGFLEET_API_MAX_CONNECTIONS: '20', PGFLEET_STARTUP_TIMEOUT: '3' });
  t.teardown(() => api.stop());
  const port = Number(new URL(api.url).port);
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  const open = async (from: string, n: number) => {
    const got = [];
    for (let i = 0; i < n; i++) got.push(await idleSocket(port, from, true));
    sockets.push(...got.map((g) => g.socket));
    return got;
  };

  const flood = await open('127.0.0.2', 8);
  const extra = (await open('127.0.0.2', 1))[0]!;
  t.ok(await isClosed(extra.closedByServer, 5000), 'the ninth socket from one address is closed at once');
  t.match(extra.reply(), /^HTTP\/1.1 503.*"code":"too_many_connections".*from this address/s, 'with a 503 that says why');
  t.notOk(await isClosed(flood[0]!.closedByServer, 300), 'the first eight stay');
  t.equal(await healthz(port, '127.0.0.5'), 200, 'another address is served meanwhile');

  // Two more addresses fill the shared room (18); a third, new, address still gets in.
  const more = await open('127.0.0.3', 8);
  const over = await open('127.0.0.4', 3);
  t.equal(await healthz(port, '127.0.0.6'), 200, 'a new address gets in: room is kept for it');
  t.ok(await isClosed(over[2]!.closedByServer, 5000), 'an address that already holds its share of the rest is turned away');

  // Sockets that began a request and stopped are closed within the startup timeout (3 s).
  const started = Date.now();
  await Promise.all([...flood, ...more].map((f) => f.closedByServer));
  t.ok(Date.now() - started < 10_000, `every idle socket was closed by the server (${Date.now() - started} ms)`);
  await until('the flood to be let go', async () => (await healthz(port, '127.0.0.2').catch(() => 0)) === 200, 10_000);
  t.pass('the flooding address is served once its sockets are gone');
});
