// One tenant cannot lock the others out (issue 27, finding 4): a database's client connections,
// direct, pooled, WebSocket and HTTP together, are capped (PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS,
// by default a quarter of the gateway's at most), and its quota max_client_connections raises that.
import { Pool, neon } from '@neondatabase/serverless';
import pg from 'pg';
import t from 'tap';
import { resolveClientLimits } from '../../src/limits/client-limits.ts';
import { pooled } from '../api-client.ts';
import { psql, psqlError, startProxyFixture } from '../proxy-helpers.ts';
import { pointDriverAt, serverlessUri } from '../serverless-helpers.ts';

t.test('the default share is at most a quarter of the gateway, and a larger setting is refused', async (t) => {
  const base = { maxClientConnections: 400, maxClientConnectionsPerAddress: undefined, databaseMaxClientConnections: undefined, maxHandshakes: 10, maxHandshakesPerAddress: 10, startupTimeoutMs: 1000 };
  t.equal(resolveClientLimits(base, 0).databaseMaxClientConnections, 100, 'a quarter of 400');
  t.equal(resolveClientLimits({ ...base, maxClientConnections: undefined }, 100_000).databaseMaxClientConnections, 1000, 'at most 1,000');
  t.throws(() => resolveClientLimits({ ...base, databaseMaxClientConnections: 101 }, 0), { message: /PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS: must be at most a quarter/ });
});

t.test('a tenant opening many pooled connections meets its cap; another tenant connects meanwhile', async (t) => {
  const f = await startProxyFixture({ PGFLEET_HTTP_PORT: '0', PGFLEET_MAX_CLIENT_CONNECTIONS: '400', PGFLEET_MAX_CLIENT_CONNECTIONS_PER_ADDRESS: '400', PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS: '60' });
  t.teardown(() => f.stop());
  pointDriverAt(f);
  const a = await f.createDatabase();
  const b = await f.createDatabase();
  const opened: pg.Client[] = [];
  t.teardown(() => Promise.all(opened.map((c) => c.end().catch(() => {}))));
  const open = async () => {
    const c = new pg.Client({ connectionString: a.pooledUriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
    c.on('error', () => {});
    try {
      await c.connect();
      opened.push(c);
      return 'ok';
    } catch (err) {
      return `${(err as { code?: string }).code} ${(err as Error).message}`;
    }
  };

  const outcomes = await pooled(Array.from({ length: 150 }), 15, open);
  t.equal(outcomes.filter((o) => o === 'ok').length, 60, 'exactly the cap of 60 got in');
  t.ok(outcomes.filter((o) => o !== 'ok').every((o) => /^53300 too many client connections to this database: max_client_connections is 60/.test(o)), 'the rest: 53300 naming the quota');

  t.equal(await psql(f.conninfo(b), 'SELECT current_user'), b.role, 'another tenant connects directly');
  t.equal(await psql(f.pooledConninfo(b), 'SELECT 1'), '1', 'and pooled');
  t.match(await psqlError(f.conninfo(a)), /max_client_connections is 60/, 'the capped tenant\'s direct connection counts against the same cap');
  const ws = new Pool({ connectionString: serverlessUri(a) });
  await t.rejects(ws.query('SELECT 1'), { code: '53300' }, 'so does a WebSocket session');
  await ws.end();
  await t.rejects(neon(serverlessUri(a))`SELECT 1`, { code: '53300' }, 'and a POST /sql');
  t.equal(String((await neon(serverlessUri(b))`SELECT 1 AS one`)[0]!.one), '1', 'the other tenant\'s HTTP query is served');

  // The partner raises the quota: the cap moves at once.
  await f.core.databases.update(f.partnerId, a.database.id, { quotas: { max_client_connections: 70 } });
  const more = await pooled(Array.from({ length: 12 }), 4, open);
  t.equal(more.filter((o) => o === 'ok').length, 10, 'ten more once max_client_connections is 70');
  await Promise.all(opened.splice(0).map((c) => c.end()));
  t.equal(await psql(f.conninfo(a), 'SELECT 1'), '1', 'connections that end give their place back');
});
