// PROXY protocol v2 from the load balancers in PGFLEET_TRUSTED_PROXIES (issue 27, finding 8): a
// trusted peer must send the header and the client it names is the one pgfleet sees and limits
// (the proxy itself is exempt from per-address caps); anyone else's header is refused.
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { Command, IPv4Address, IPv4ProxyAddress, TransportProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import t from 'tap';
import { startApi } from '../api-client.ts';
import { until } from '../helpers.ts';
import { socketFrom } from '../proxy-helpers.ts';

const TRUSTED = '127.0.0.9';

/** The header a balancer sends for a client at `client`. */
function header(client: string): Buffer {
  const octets = client.split('.').map(Number);
  return Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM,
    new IPv4ProxyAddress(IPv4Address.createFrom(octets), 40000, IPv4Address.createFrom([127, 0, 0, 1]), 5432)).build());
}

const api = await startApi({ PGFLEET_TRUSTED_PROXIES: `${TRUSTED}/32`, PGFLEET_MAX_HANDSHAKES_PER_ADDRESS: '3', PGFLEET_API_UNAUTHENTICATED_RATE_LIMIT: '2', PGFLEET_DOMAIN: 'localhost' });
t.teardown(() => api.stop());
const lines: any[] = [];
api.gateway.core.log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => { lines.push(JSON.parse(String(chunk))); done(); } }));
const partner = await api.partner();
const db = (await api.request('POST', '/v1/databases', { key: partner.key, body: { user_id: 'alice' } })).body;

function query(from: string, first?: Buffer): Promise<string> {
  const c = new pg.Client({
    host: '127.0.0.1', port: api.gateway.proxyPort, user: db.role, password: db.password, database: db.database,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpoint_id}`, stream: () => socketFrom(from, first),
  } as pg.ClientConfig);
  c.on('error', () => {});
  return c.connect().then(() => c.query('SELECT 1 AS one')).then((r) => String(r.rows[0].one), (err: Error & { code?: string }) => `${err.code} ${err.message}`)
    .finally(() => c.end().catch(() => {}));
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** What the proxy answers `bytes` sent from `from`, up to its close. */
function answerTo(from: string, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port: api.gateway.proxyPort, host: '127.0.0.1', localAddress: from }, () => s.write(bytes));
    let answer = '';
    s.on('data', (d) => (answer += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => resolve(answer));
  });
}

t.test('the proxy: the header\'s client is the one logged; no header from a trusted proxy, or one from anyone else, is refused', async (t) => {
  t.equal(await query(TRUSTED, header('203.0.113.7')), '1', 'a client behind the trusted proxy is served');
  await until('its log line', () => lines.some((l) => l.msg === 'connection' && l.role === db.role));
  t.equal(lines.find((l) => l.msg === 'connection' && l.role === db.role).client, '203.0.113.7', 'the log line names the client behind the proxy');
  t.match(await answerTo(TRUSTED, SSL_REQUEST), /^E.*08P01.*a trusted proxy must open with a PROXY protocol v2 header/s, 'a trusted peer without the header is refused');
  t.match(await answerTo('127.0.0.1', Buffer.concat([header('203.0.113.8'), SSL_REQUEST])), /^E.*08P01.*not a trusted proxy/s, 'a header from anyone else is refused');
  t.equal(await query('127.0.0.1'), '1', 'a direct client is served as before');
});

t.test('per-address caps count the header\'s client; the trusted proxy itself is exempt', async (t) => {
  const held: net.Socket[] = [];
  t.teardown(() => held.forEach((s) => s.destroy()));
  const idle = (client: string) => new Promise<{ answer: () => string }>((resolve) => {
    const s = net.connect({ port: api.gateway.proxyPort, host: '127.0.0.1', localAddress: TRUSTED }, () => s.write(Buffer.concat([header(client), Buffer.from([0])])));
    let answer = '';
    s.on('data', (d) => (answer += d.toString('latin1')));
    s.on('error', () => {});
    held.push(s);
    setTimeout(() => resolve({ answer: () => answer }), 200);
  });
  const same = [];
  for (let i = 0; i < 5; i++) same.push(await idle('198.51.100.1'));
  t.equal(same.filter((s) => /from this address/.test(s.answer())).length, 2, 'one client behind the proxy gets its 3 handshakes, no more');
  const many = [];
  for (let i = 0; i < 6; i++) many.push(await idle(`198.51.100.${10 + i}`));
  t.equal(many.filter((s) => s.answer() !== '').length, 0, 'six clients behind the one proxy address are all let in');
});

t.test('the API: the unauthenticated limit counts the client behind the proxy', async (t) => {
  const port = Number(new URL(api.url).port);
  const get = (client: string) => new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/v1/databases', createConnection: () => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: TRUSTED });
      s.write(header(client)); // queued ahead of the request
      return s;
    } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    }).on('error', reject);
  });
  t.same([await get('192.0.2.1'), await get('192.0.2.1'), await get('192.0.2.1')], [401, 401, 429], 'one client behind the proxy reaches its limit');
  t.equal(await get('192.0.2.2'), 401, 'another client behind the same proxy is not limited by it');
});
