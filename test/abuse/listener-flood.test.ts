// Descriptor exhaustion (issue 16, items 1 and 5): idle one-byte sockets from one address, and
// from many addresses against a process with a low descriptor limit. Others keep connecting
// and the API keeps answering; refusals are logged as counts, not a line each.
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { startApi } from '../api-client.ts';
import { nodeTs, testConfig } from '../helpers.ts';
import { psql } from '../proxy-helpers.ts';
import { flood, until } from './flood.ts';

t.test('one address holding a thousand idle sockets: others connect, the API answers, the idle ones are dropped', async (t) => {
  // The startup timeout is long enough that the admitted 50 stay while the other 950 are turned away, even on a loaded machine.
  const api = await startApi({ PGFLEET_MAX_HANDSHAKES_PER_ADDRESS: '50', PGFLEET_STARTUP_TIMEOUT: '10', PGFLEET_DOMAIN: 'localhost' });
  t.teardown(() => api.stop());
  const lines: any[] = [];
  api.gateway.core.log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => { lines.push(JSON.parse(String(chunk))); done(); } }));
  const partner = await api.partner();
  const db = (await api.request('POST', '/v1/databases', { key: partner.key, body: { user_id: 'alice' } })).body;
  const conninfo = `host=${db.endpoint_id}.localhost hostaddr=127.0.0.1 port=${api.gateway.proxyPort} user=${db.role} dbname=${db.database} password=${db.password} sslmode=require`;

  const attack = await flood(api.gateway.proxyPort, 1000, '127.0.0.2');
  t.teardown(() => attack.end());
  await until('the sockets over the per-address cap to be turned away', () => attack.closedByServer() >= 950);
  // (Most read the reason; one whose unread byte makes the close a reset may not.)
  t.ok(attack.answered('too many connections in their handshake from this address') > 0, 'turned away with 53300 and the reason');
  t.equal(await psql(conninfo, 'SELECT current_user'), db.role, 'a client from another address connects during the flood');
  t.equal((await api.request('GET', '/healthz')).status, 200, 'the API answers during the flood');
  await until('the startup timeout to drop the idle sockets it admitted', () => attack.closedByServer() === 1000);
  t.pass('every attacking socket was closed by the server, none by the attacker');

  await api.stop();
  const connectionLines = lines.filter((l) => l.msg === 'connection');
  const summary = lines.filter((l) => l.msg === 'connections refused (not logged one by one)');
  const inFull = connectionLines.filter((l) => l.role !== db.role || l.outcome !== 'client_closed').length;
  const counted = summary.reduce((n, l) => n + l.refused, 0);
  // 20 in full per 10 s interval, the rest counted.
  t.ok(inFull <= 20 * (summary.length + 1), `refused connections logged in full: ${inFull}, at most 20 per interval (${summary.length + 1} intervals)`);
  t.ok(inFull + counted >= 1000, `every refused connection is logged or counted (${inFull} + ${counted})`);
  t.ok(connectionLines.some((l) => l.role === db.role && l.outcome === 'client_closed'), 'the authenticated session has its own line');
  t.ok(summary.every((l) => l.top_clients['127.0.0.2'] > 0), 'the summary names the flooding address');
});

t.test('a flood from many addresses against a low descriptor limit: no EMFILE, the API answers, the proxy recovers', async (t) => {
  // 512 descriptors; the reserve for 2 computes leaves (512 - 264) / 2 = 124 client connections.
  const config = testConfig();
  const env = {
    ...process.env, PGFLEET_DATA_DIR: config.dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'info',
    PGFLEET_ADMIN_KEY: 'test-admin-key-0123456789', PGFLEET_DOMAIN: 'localhost', PGFLEET_MAX_COMPUTES: '2', PGFLEET_STARTUP_TIMEOUT: '30',
  };
  const [node, args] = nodeTs('test/abuse/fixtures/gateway.ts');
  const child = spawn('prlimit', ['--nofile=512:512', node, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  await until('the gateway to start', () => {
    if (child.exitCode !== null) throw new Error(`the gateway exited: ${output}`);
    return output.includes('"proxyPort"');
  }, 180_000);
  const info = JSON.parse(output.split('\n').find((l) => l.includes('"proxyPort"'))!);
  const conninfo = `host=${info.endpointId}.localhost hostaddr=127.0.0.1 port=${info.proxyPort} user=${info.role} dbname=app password=${info.password} sslmode=require`;
  t.equal(await psql(conninfo, 'SELECT 1'), '1', 'connects before the flood');

  const sources = Array.from({ length: 30 }, (_, i) => `127.0.1.${i + 1}`);
  const attack = await flood(info.proxyPort, 600, sources);
  await until('the connection cap to turn the excess away', () => attack.closedByServer() >= 600 - 124);
  const health = await fetch(`${info.apiUrl}/healthz`);
  t.equal(health.status, 200, 'the API answers while the proxy is at its cap');
  // The flood holds what is not kept for new addresses (a tenth); a client from one that holds nothing gets in.
  t.equal(await psql(conninfo, 'SELECT 1'), '1', 'a client from a new address gets in through the room kept for new addresses');
  attack.end();
  await until('the proxy to take connections again', async () => (await psql(conninfo, 'SELECT 1').catch(() => '')) === '1');
  t.pass('after the flood, clients connect again');
  t.notMatch(output, /EMFILE|ENFILE/, 'descriptors never ran out');
});
