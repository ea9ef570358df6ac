// What a client sees on the wire, beside the same compute reached directly (its Unix socket):
// direct TLS with ALPN, how a session ends, a client that leaves at once, JWT without options.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import pg from 'pg';
import t from 'tap';
import { ClientStream, ComputeStream, leftIdle } from '../proxy/protocol/message-framing.ts';
import { errorResponse, parameterStatus } from '../proxy/protocol/messages.ts';
import { ServerParameters, framesOfType } from '../proxy/protocol/server-parameters.ts';
import { MSG } from '../proxy/protocol/codes.ts';
import { routeByEndpoint } from '../src/catalog/routes.ts';
import { psql, psqlError, startProxyFixture } from './proxy-helpers.ts';
import { until } from './helpers.ts';

const f = await startProxyFixture();
t.teardown(() => f.stop());
const a = await f.createDatabase();
const ca = fs.readFileSync(f.proxy.caPath!, 'utf8');
const servername = `${a.endpointId}.${f.core.config.domain}`;

// The compute itself, held awake for the whole file: node-postgres on its socket is the baseline.
const route = (await routeByEndpoint(f.core.catalog, a.endpointId))!;
const lease = await f.core.computes.acquire(f.core.targetFor(route));
t.teardown(() => lease.release());
if (lease.address.kind !== 'unix') throw new Error('a local compute has a Unix socket');
const socketPath = lease.address.socketPath;

type Make = () => pg.Client;
const direct: Make = () => new pg.Client({
  host: path.dirname(socketPath), port: Number(path.extname(socketPath).slice(1)), user: a.role, database: 'app',
});
const proxied = (extra: Partial<pg.ClientConfig> = {}): pg.Client => new pg.Client({
  host: '127.0.0.1', port: f.proxy.port, user: a.role, password: a.password, database: 'app',
  ssl: { servername, ca }, ...extra,
});

const outcome = (p: Promise<unknown>) => p.then(() => 'ok', (e: Error & { code?: string; severity?: string }) => `${e.severity ?? '-'} ${e.code ?? '-'} ${e.message}`);

/** Resolves once a condition holds (polled), or fails after a generous bound. */

/** Runs a scenario on a client and records what it saw: query outcomes and 'error' events, until the connection ended. */
async function observe(make: Make, scenario: (c: pg.Client) => Promise<string[]>): Promise<{ results: string[]; events: string[] }> {
  const c = make();
  const events: string[] = [];
  let ended = false;
  c.on('error', (e: Error & { code?: string }) => events.push(`${e.code ?? '-'} ${e.message}`));
  c.on('end', () => (ended = true));
  await c.connect();
  const results = await scenario(c);
  await until('the connection to end', () => ended);
  return { results, events };
}

t.test('direct TLS (sslnegotiation=direct, ALPN postgresql) as from Postgres 17', async (t) => {
  const c = proxied({ sslnegotiation: 'direct' } as Partial<pg.ClientConfig>);
  await c.connect();
  t.equal((await c.query('SELECT current_user AS u')).rows[0].u, a.role, 'node-postgres with sslnegotiation direct and SNI connects');
  await c.end();

  // Without ALPN on the direct path: Postgres's FATAL, over TLS.
  const noAlpn = await new Promise<Buffer>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: f.proxy.port, servername, ca });
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(got)));
  });
  t.equal(String.fromCharCode(noAlpn[0]!), 'E', 'an ErrorResponse');
  t.match(noAlpn.toString('latin1'), /C08P01\0Mreceived direct SSL connection request without ALPN protocol negotiation extension\0/);

  // Another protocol: the TLS alert no_application_protocol, and the reason in the connection's log line.
  const logged: Record<string, unknown>[] = [];
  const info = f.core.log.info.bind(f.core.log);
  f.core.log.info = ((obj: Record<string, unknown>, ...rest: string[]) => {
    logged.push(obj);
    info(obj, ...rest);
  }) as typeof f.core.log.info;
  t.teardown(() => {
    f.core.log.info = info;
  });
  const wrongAlpn = await new Promise<string>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: f.proxy.port, servername, ca, ALPNProtocols: ['http/1.1'] });
    s.on('secureConnect', () => resolve('connected'));
    s.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
  });
  t.equal(wrongAlpn, 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
  await until('the connection to be logged', () => logged.some((l) => l.outcome === 'tls_handshake_failed'));
  t.match(logged.find((l) => l.outcome === 'tls_handshake_failed'), { err: /^the TLS handshake failed: ERR_SSL_NO_APPLICATION_PROTOCOL/ },
    'the log line says why the handshake failed');

  // On the SSLRequest path ALPN is advertised too.
  const alpn = await new Promise<string | false | null>((resolve, reject) => {
    const raw = net.connect(f.proxy.port, '127.0.0.1', () => raw.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    raw.once('data', (answer) => {
      if (answer.toString() !== 'S') return reject(new Error(`answer ${answer.toString()}`));
      const s = tls.connect({ socket: raw, servername, ca, ALPNProtocols: ['postgresql'] }, () => {
        resolve(s.alpnProtocol);
        s.destroy();
      });
      s.on('error', reject);
    });
  });
  t.equal(alpn, 'postgresql');
});

t.test('a compute that ends the session: the client sees what the compute sent, nothing more', async (t) => {
  // pg_terminate_backend of its own backend, with a query queued behind.
  const selfTerminate = async (c: pg.Client) =>
    Promise.all([outcome(c.query('SELECT pg_terminate_backend(pg_backend_pid())')), outcome(c.query('SELECT 1'))]);
  const viaDirect = await observe(direct, selfTerminate);
  const viaProxy = await observe(() => proxied(), selfTerminate);
  t.match(viaDirect.results[0], /^FATAL 57P01 terminating connection due to administrator command$/, 'the baseline');
  t.same(viaProxy, viaDirect, 'through pgfleet: the same results and events');

  // A named prepared statement killed mid-execution by another session.
  const killedMidway = (make: Make) => async (c: pg.Client) => {
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const running = outcome(c.query({ name: 'slow', text: 'SELECT pg_sleep($1)', values: [60] }));
    const queued = outcome(c.query('SELECT 2'));
    const killer = make();
    await killer.connect();
    await until('the statement to run', async () =>
      (await killer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND state = 'active'`, [pid])).rows[0].n === 1);
    await killer.query('SELECT pg_terminate_backend($1)', [pid]);
    await killer.end();
    return Promise.all([running, queued]);
  };
  const killedDirect = await observe(direct, killedMidway(direct));
  const killedProxied = await observe(() => proxied(), killedMidway(() => proxied()));
  t.match(killedDirect.results[0], /^FATAL 57P01 /, 'the baseline: the compute\'s own message');
  t.same(killedProxied, killedDirect, 'through pgfleet: the same');
});

t.test('a pooled client whose backend is terminated gets one FATAL, as from Postgres: one error event', async (t) => {
  const pooled = () => proxied({ ssl: { servername: `${a.endpointId}-pooler.${f.core.config.domain}`, ca } });
  // Another session ends the backend running the client's statement (through the pooler, only that backend knows it is the client's).
  const killedWhileSleeping = async (c: pg.Client) => {
    const running = outcome(c.query({ name: 'slow', text: 'SELECT pg_sleep($1)', values: [60] }));
    const queued = outcome(c.query('SELECT 2'));
    const killer = direct();
    await killer.connect();
    const sleeping = `SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep($1)' AND state = 'active'`;
    await until('the statement to run', async () => (await killer.query(sleeping)).rowCount === 1);
    await killer.query(`SELECT pg_terminate_backend(pid) FROM (${sleeping}) s`);
    await killer.end();
    return Promise.all([running, queued]);
  };
  const viaDirect = await observe(direct, killedWhileSleeping);
  const viaPooler = await observe(pooled, killedWhileSleeping);
  t.match(viaDirect.results[0], /^FATAL 57P01 terminating connection due to administrator command$/, 'the baseline');
  t.equal(viaDirect.events.length, 1, 'the baseline: one error event (the connection\'s end)');
  t.same(viaPooler, viaDirect, 'through the pooler: the same results and the same single error event');
});

t.test('a client that leaves at once is let go without a word', async (t) => {
  // node-postgres connect() then end(): its Terminate goes out before the SSLRequest.
  const c = proxied();
  const events: string[] = [];
  c.on('error', (e) => events.push(e.message));
  let connectFailure = '';
  c.connect().catch((e: Error) => (connectFailure = e.message));
  await c.end();
  const stream = (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
  await until('the socket to close', () => stream.destroyed);
  t.same(events, [], 'no error event');
  t.equal(connectFailure, '', 'no "There was an error establishing an SSL connection"');

  const silent = async (data: Buffer) => new Promise<Buffer>((resolve) => {
    const s = net.connect(f.proxy.port, '127.0.0.1', () => s.end(data));
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got)));
  });
  const terminate = Buffer.from([0x58, 0, 0, 0, 4]);
  const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  t.equal((await silent(Buffer.concat([terminate, sslRequest]))).length, 0, 'Terminate then SSLRequest: closed, no answer');
  t.equal((await silent(Buffer.concat([sslRequest, terminate]))).length, 0, 'SSLRequest then Terminate: closed, no answer');
  t.equal((await silent(Buffer.alloc(0))).length, 0, 'nothing at all: closed, no answer');
});

t.test('a JWT is told apart from a password wherever the proxy sees it', async (t) => {
  const { token } = await f.core.jwt.tokens.issueFor(a.database, { ttlSeconds: 600 });
  const base = `host=localhost hostaddr=127.0.0.1 port=${f.proxy.port} user=${a.role} dbname=app sslmode=require`;
  t.equal(await psql(`${base} password=endpoint=${a.endpointId};${token}`, 'SELECT current_user'), a.role,
    'endpoint=<id>;<JWT> as the password');
  t.equal(await psql(`${base} password=${token}`, 'SELECT current_user'), a.role, 'the token alone');
  const sni = `${base.replace('host=localhost', `host=${servername}`)} password=${token}`;
  const refused = await psqlError(sni);
  t.match(refused, /password authentication failed/, 'SNI names the endpoint: SCRAM, which cannot carry a token');
  t.notMatch(refused, /JWT|HINT/, 'and no hint about tokens: SCRAM never shows the proxy the password');
  const wrong = await psqlError(`${base.replace('host=localhost', `host=${servername}`)} password=not-the-password`);
  t.match(wrong, /password authentication failed/);
  t.notMatch(wrong, /JWT|HINT/, 'a wrong password gets no hint about tokens either');
  const prefixed = await psqlError(`${base} password=endpoint=${a.endpointId};not-the-password`);
  t.notMatch(prefixed, /JWT|HINT/, 'nor a wrong password seen in clear (it does not look like a JWT)');
  t.equal(await psql(`${sni} options=auth=jwt`, 'SELECT 1'), '1', 'options=auth=jwt');
  t.match(await psqlError(`${base} password=${token} channel_binding=require`),
    /channel binding required but not supported/, 'channel_binding=require cannot carry a token (as documented)');
});

t.test('message framing follows boundaries however the stream is cut', async (t) => {
  const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
  const inTransaction = Buffer.from([0x5a, 0, 0, 0, 5, 0x54]);
  const fatal = errorResponse({ sqlstate: '57P01', message: 'terminating connection due to administrator command' });
  const notice = errorResponse({ severity: 'ERROR', sqlstate: '42601', message: 'syntax error' });
  const setting = parameterStatus('TimeZone', 'Europe/Berlin');
  const stream = Buffer.concat([ready, notice, setting, ready, fatal]);
  for (const size of [1, 3, 7, stream.length]) {
    const parameters = new ServerParameters(Buffer.concat([parameterStatus('TimeZone', 'UTC'), notice, parameterStatus('DateStyle', 'ISO, MDY')]));
    const e = new ComputeStream(parameters);
    const seen: boolean[] = [];
    for (let at = 0; at < stream.length; at += size) {
      e.feed(stream.subarray(at, at + size));
      seen.push(e.atBoundary);
    }
    t.ok(e.saidWhy && e.atBoundary, `cut every ${size} bytes: the FATAL is seen, at a boundary`);
    t.equal(e.ready, 2, 'both ReadyForQuery counted');
    t.same([...parameters.all()], [['TimeZone', 'Europe/Berlin'], ['DateStyle', 'ISO, MDY']], 'the startup answer\'s settings are read past its notice, and the reported one is followed, in place');
    if (size === 1) t.ok(seen.includes(false), 'mid-message is noticed');
  }
  const greeting = Buffer.concat([parameterStatus('a', '1'), notice, parameterStatus('b', '2'), notice]);
  t.same(framesOfType(greeting, MSG.error), Buffer.concat([notice, notice]), 'the frames of one type are picked out of a startup answer');
  t.same(new ServerParameters(greeting).frames(), [parameterStatus('a', '1'), parameterStatus('b', '2')], 'its settings are told again as they were');
  const errorThenCut = new ComputeStream();
  errorThenCut.feed(Buffer.concat([notice, ready.subarray(0, 3)]));
  t.notOk(errorThenCut.saidWhy || errorThenCut.atBoundary, 'an ERROR is no goodbye, and a cut message is no boundary');

  // The client's side: what its messages await, and whether it left its backend idle.
  const query = Buffer.from([0x51, 0, 0, 0, 13, ...Buffer.from('SELECT 1'), 0]);
  const parse = Buffer.from([0x50, 0, 0, 0, 9, 0, 0x78, 0, 0, 0]); // Parse of "x", unnamed, no parameter types
  const sync = Buffer.from([0x53, 0, 0, 0, 4]);
  const terminate = Buffer.from([0x58, 0, 0, 0, 4]);
  const idleAfter = (client: Buffer[], compute: Buffer[]) => {
    const c = new ClientStream();
    const s = new ComputeStream();
    for (const b of client) c.feed(b);
    for (const b of compute) s.feed(b);
    return leftIdle(c, s);
  };
  t.ok(idleAfter([query, terminate], [ready]), 'a query answered, then Terminate: idle');
  t.ok(idleAfter([terminate], []), 'Terminate at once: idle');
  t.notOk(idleAfter([query, query, terminate], [ready]), 'a query still unanswered: not idle');
  t.notOk(idleAfter([query, terminate], [inTransaction]), 'a transaction left open: not idle');
  t.notOk(idleAfter([parse, terminate], []), 'extended-protocol messages without a Sync: not idle');
  t.ok(idleAfter([parse, sync, terminate], [ready]), 'with their Sync answered: idle');
  t.notOk(idleAfter([query], [ready]), 'no Terminate: the client did not say goodbye');
  t.notOk(idleAfter([query, terminate.subarray(0, 3)], [ready]), 'a Terminate cut short is none');
});
