/**
 * A reconnecting client resumes its TLS session with a ticket from its last connection, and so
 * skips the full handshake; resumption skips nothing else: the endpoint is still the one the new
 * ClientHello names, and SCRAM still runs.
 */
import fs from 'node:fs';
import pg from 'pg';
import t from 'tap';
import { startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture();
t.teardown(() => f.stop());
const ca = fs.readFileSync(f.proxy.caPath!, 'utf8');
const [a, b] = [await f.createDatabase(), await f.createDatabase()];
const domain = f.core.config.domain;

interface Connected { client: pg.Client; reused: boolean; ticket: () => Buffer | undefined }

/** node-postgres over TLS to an endpoint by SNI, offering `session` for resumption; keeps the tickets it is given. */
async function connect(db: typeof a, opts: { session?: Buffer; password?: string } = {}): Promise<Connected> {
  const client = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: db.role, password: opts.password ?? db.password, database: db.database.databaseName,
    ssl: { ca, servername: `${db.endpointId}.${domain}`, session: opts.session },
  });
  let ticket: Buffer | undefined;
  const connection = (client as unknown as { connection: NodeJS.EventEmitter & { stream: import('node:tls').TLSSocket } }).connection;
  connection.on('sslconnect', () => connection.stream.on('session', (s: Buffer) => (ticket = s)));
  await client.connect();
  return { client, reused: connection.stream.isSessionReused(), ticket: () => ticket };
}

// Both databases have the same role and database names: a table only a has tells them apart.
const setup = await connect(a);
await setup.client.query('CREATE TABLE only_in_a ()');
await setup.client.end();
/** Whether the session is in database a. */
const inA = async (c: pg.Client) => (await c.query(`SELECT to_regclass('only_in_a') IS NOT NULL AS yes`)).rows[0].yes as boolean;

t.test('a ticket from the last connection resumes the session; SCRAM still runs', async (t) => {
  const first = await connect(a);
  t.equal(first.reused, false, 'a connection without a ticket makes a full handshake');
  t.equal(await inA(first.client), true, 'served by a');
  const ticket = first.ticket();
  await first.client.end();
  t.ok(ticket, 'the proxy gave the client a session ticket');

  const second = await connect(a, { session: ticket });
  t.equal(second.reused, true, 'the reconnect resumes: no full handshake');
  t.equal(await inA(second.client), true, 'and is served by a');
  await second.client.end();

  await t.rejects(connect(a, { session: ticket, password: 'not-the-password' }), { code: '28P01' },
    'a resumed session still needs the password');
});

t.test('a ticket resumed under another endpoint\'s name reaches that endpoint, and needs its password', async (t) => {
  const first = await connect(a);
  const ticket = first.ticket();
  await first.client.end();
  t.ok(ticket, 'a ticket from a');

  const other = await connect(b, { session: ticket });
  t.equal(await inA(other.client), false, 'routed to b, by the new ClientHello\'s name');
  await other.client.end();
  await t.rejects(connect(b, { session: ticket, password: a.password }), { code: '28P01' }, 'with the first endpoint\'s password: refused');
});
