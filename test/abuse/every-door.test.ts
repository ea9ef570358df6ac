// Every door holds under a flood from a few addresses (issue 27, findings 1 and 2): the serverless
// HTTP door, the proxy's handshakes and the node link each keep serving a client from another
// address, and close the flooding sockets (which began a handshake and stopped) within seconds.
import https from 'node:https';
import tls from 'node:tls';
import pino from 'pino';
import t from 'tap';
import type { NodeListenerDeps } from '../../src/nodes/node-listener.ts';
import { startNodeListener } from '../../src/nodes/node-listener.ts';
import { askNode, nodeKey } from '../../src/nodes/node-link.ts';
import { encodeStartup } from '../../proxy/protocol/startup.ts';
import { psql } from '../proxy-helpers.ts';
import { startProxyFixture } from '../proxy-helpers.ts';
import { flood, until } from './flood.ts';

const addresses = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}.${i + 1}`);

/** POST /sql from `from` to the serverless door: the HTTP status. */
function sql(port: number, from: string, conn: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/sql', method: 'POST', localAddress: from, rejectUnauthorized: false, agent: false,
      headers: { 'neon-connection-string': conn, 'content-type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ query: 'SELECT 1', params: [] }));
  });
}

t.test('the serverless door and the proxy handshakes under a flood from ten addresses', async (t) => {
  const f = await startProxyFixture({
    PGFLEET_HTTP_PORT: '0', PGFLEET_STARTUP_TIMEOUT: '3', PGFLEET_DOMAIN: 'localhost',
    PGFLEET_MAX_CLIENT_CONNECTIONS: '400', PGFLEET_MAX_CLIENT_CONNECTIONS_PER_ADDRESS: '30',
    PGFLEET_MAX_HANDSHAKES: '100', PGFLEET_MAX_HANDSHAKES_PER_ADDRESS: '30',
  });
  t.teardown(() => f.stop());
  const db = await f.createDatabase();
  const conn = `postgresql://${db.role}:${db.password}@${db.endpointId}.localhost/${db.database.databaseName}`;
  const conninfo = f.conninfo(db);
  t.equal(await sql(f.proxy.httpPort!, '127.0.0.1', conn), 200, 'POST /sql answers before the flood');

  // Ten addresses, 40 unfinished TLS handshakes each on the HTTP door: 30 each are held, the rest turned away.
  const door = await flood(f.proxy.httpPort!, 400, addresses('127.0.4', 10), 0x16);
  t.teardown(() => door.end());
  await until('the sockets past the per-address cap to hear why', () => door.answered('too many connections from this address') >= 50);
  for (let i = 0; i < 5; i++) t.equal(await sql(f.proxy.httpPort!, `127.0.5.${i + 1}`, conn), 200, `a new address is served during the flood (${i + 1})`);
  const started = Date.now();
  await until('the door to close every flooding socket', () => door.closedByServer() === 400, 20_000);
  t.ok(Date.now() - started < 15_000, `unfinished handshakes closed within seconds (${Date.now() - started} ms)`);
  door.end();

  // Finding 2: ten addresses × their cap of idle handshakes on the proxy; clients from clean addresses still get in.
  const proxy = await flood(f.proxy.port, 300, addresses('127.0.6', 10));
  t.teardown(() => proxy.end());
  await until('the flood to meet the handshake caps', () => proxy.answered('too many connections in their handshake') >= 100);
  for (let i = 0; i < 5; i++) t.equal(await psql(conninfo, 'SELECT 1'), '1', `a client from another address connects (${i + 1} of 5)`);
  await until('the proxy to close every flooding socket', () => proxy.closedByServer() === 300, 20_000);
  t.pass('every idle handshake was closed by the proxy');

  // A slow peer in the middle of authentication: asked for SCRAM, it never answers.
  const slow = tls.connect({ host: '127.0.0.1', port: f.proxy.port, servername: `${db.endpointId}.localhost`, ALPNProtocols: ['postgresql'], rejectUnauthorized: false });
  slow.on('error', () => {});
  await new Promise((r) => slow.once('secureConnect', r));
  const asked = new Promise((r) => slow.once('data', r));
  slow.write(encodeStartup(new Map([['user', db.role], ['database', 'app']])));
  await asked;
  const since = Date.now();
  await new Promise((r) => slow.once('close', r));
  t.ok(Date.now() - since < 10_000, `a client that does not answer SCRAM is closed after the startup timeout (${Date.now() - since} ms)`);
});

t.test('the node link under a flood: fleet peers still get through, unfinished handshakes are closed', async (t) => {
  const key = nodeKey(Buffer.alloc(32, 7));
  const limits = { maxConnections: 200, maxHandshakes: 40, maxHandshakesPerAddress: 10, timeoutMs: 2000 };
  // Only the request line is read for an unknown operation: nothing else of a node is needed.
  const deps = { key, log: pino({ level: 'silent' }), limits } as unknown as NodeListenerDeps;
  const listener = await startNodeListener(deps, '127.0.0.1', 0);
  t.teardown(() => listener.close());
  const node = { id: 'n1', address: `127.0.0.1:${listener.port}` };
  const probe = () => askNode(node, key, 'n2', { op: 'nope' } as never).then(() => 'answered', (err: Error) => err.message);

  const attack = await flood(listener.port, 120, addresses('127.0.7', 4), 0x16);
  t.teardown(() => attack.end());
  await until('the handshakes over the per-address cap to be dropped', () => attack.closedByServer() >= 120 - 40);
  for (let i = 0; i < 3; i++) t.equal(await probe(), 'unknown node request', `a fleet peer gets through and is answered (${i + 1})`);
  await until('every flooding socket to be closed', () => attack.closedByServer() === 120, 15_000);
  t.pass('unfinished TLS handshakes were closed within the timeout');
});
