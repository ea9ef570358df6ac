// End to end on a Neon region: the API creates the database as a Neon project (the fake Neon API),
// and psql reaches it through pgfleet's proxy, which speaks TLS + SCRAM to the "Neon" compute.
import t from 'tap';
import { startApi } from './api-client.ts';
import { FakeNeon } from './fake-neon/fake-neon.ts';
import { neonRegionEnv } from './fake-neon/pgfleet-side.ts';
import { psql, psqlError } from './proxy-helpers.ts';
import pg from 'pg';

t.test('psql through the proxy to a Neon compute: create, query, suspend, wake, delete', async (t) => {
  const fake = await FakeNeon.start();
  t.teardown(() => fake.close());
  const api = await startApi({ ...neonRegionEnv(fake), PGFLEET_WAKE_TIMEOUT: '6' });
  t.teardown(() => api.stop());
  const acme = await api.partner('acme');
  const created = await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice', region: 'aws-us-east-2' } });
  t.equal(created.status, 201);
  t.equal(created.body.region, 'aws-us-east-2');
  t.equal(fake.projects.size, 1, 'a Neon project per database');
  const db = created.body;
  const conninfo = `host=${db.host} hostaddr=127.0.0.1 port=${api.gateway.proxyPort} user=${db.role} dbname=${db.database} password=${db.password} sslmode=require`;

  t.equal(await psql(conninfo, 'SELECT current_user'), db.role, 'psql reaches the Neon compute as the role');
  await psql(conninfo, "CREATE TABLE notes AS SELECT 'kept' AS note");
  t.match(await psqlError(conninfo.replace(db.password, 'wrong')), /password authentication failed/, "pgfleet's own password check comes first");

  t.equal((await api.request('POST', `/v1/databases/${db.id}/suspend`, { key: acme.key })).status, 200);
  t.equal(await psql(conninfo, 'SELECT note FROM notes'), 'kept', 'a suspended Neon endpoint wakes on connect, data intact');

  // A start that never finishes at Neon: the connection gets 57P03 after PGFLEET_WAKE_TIMEOUT, as with a local compute.
  t.equal((await api.request('POST', `/v1/databases/${db.id}/suspend`, { key: acme.key })).status, 200);
  fake.stickOperations('start_compute');
  const client = new pg.Client({
    host: '127.0.0.1', port: api.gateway.proxyPort, user: db.role, password: db.password, database: db.database,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpoint_id}`,
  });
  client.on('error', () => {});
  const err = await client.connect().then(() => undefined, (e: { code?: string; message: string }) => e);
  fake.stickOperations('start_compute', false);
  t.equal(err?.code, '57P03', 'a wake that does not finish is 57P03');
  t.match(err?.message, /did not answer within 6 s/);

  t.equal((await api.request('DELETE', `/v1/databases/${db.id}`, { key: acme.key })).status, 204);
  t.equal(fake.projects.size, 0, 'the Neon project is deleted');
  t.match(await psqlError(conninfo), /does not exist/, 'the endpoint is gone');
});
