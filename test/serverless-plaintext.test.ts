// The driver against a local pgfleet with PGFLEET_ALLOW_PLAINTEXT (ws:// and http://), configured
// exactly as README shows for localhost, from the API's serverless_connection_uri; its sessions and
// requests are metered like TCP ones.
import { Pool, neon, neonConfig } from '@neondatabase/serverless';
import t from 'tap';
import WebSocket from 'ws';
import { startApi } from './api-client.ts';

const api = await startApi({ PGFLEET_HTTP_PORT: '0', PGFLEET_ALLOW_PLAINTEXT: 'true', PGFLEET_USAGE_FLUSH_SECONDS: '1' });
t.teardown(() => api.stop());

t.test('README localhost settings: Pool over ws:// and neon() over http://, metered', async (t) => {
  const acme = await api.partner('acme');
  const created = await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice' } });
  t.equal(created.status, 201);
  const db = created.body;
  const httpPort = api.gateway.httpPort!;
  t.equal(db.serverless_connection_uri, `postgresql://${db.role}:${db.password}@${db.endpoint_id}.db.localhost:${httpPort}/${db.database}`,
    'the answer carries the serverless connection string (the serverless port in it)');

  // README: "On localhost"
  neonConfig.webSocketConstructor = WebSocket;
  neonConfig.useSecureWebSocket = false;
  neonConfig.wsProxy = (host, port) => `localhost:${port}/v2?address=${host}`;
  neonConfig.fetchEndpoint = (_host, port) => `http://localhost:${port}/sql`;

  const pool = new Pool({ connectionString: db.serverless_connection_uri });
  t.same((await pool.query('SELECT current_user AS u')).rows, [{ u: db.role }], 'Pool over ws://');
  await pool.end();
  const sql = neon(db.serverless_connection_uri);
  t.same(await sql`SELECT ${'over http'} AS s`, [{ s: 'over http' }], 'neon() over http://');

  // Both doors count: connections (the session and the request) and the bytes sent to the client.
  const usage = async () => (await api.request('GET', `/v1/databases/${db.id}/usage?granularity=monthly`, { key: acme.key })).body.periods[0]?.usage ?? {};
  let seen: Record<string, number> = {};
  for (let i = 0; i < 300 && !(seen.connections >= 2 && seen.data_transfer_bytes > 0); i++) {
    await new Promise((r) => setTimeout(r, 100));
    seen = await usage();
  }
  t.ok(seen.connections >= 2, `connections counted (${seen.connections})`);
  t.ok(seen.data_transfer_bytes > 0 && seen.ingress_bytes > 0, 'bytes counted both ways');
});
