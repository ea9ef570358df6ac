// What generic HTTP clients and generated clients meet: empty JSON bodies, operationIds, the
// Postgres version in a database's answer, snake_case metric labels.
import net from 'node:net';
import t from 'tap';
import { startApi } from './api-client.ts';

const api = await startApi();
t.teardown(() => api.stop());
const { key } = await api.partner('http-co');
const json = { 'content-type': 'application/json' };

t.test('Content-Type: application/json with an empty body is accepted where no body is needed', async (t) => {
  const created = await api.request('POST', '/v1/databases', { key, body: { user_id: 'eve' } });
  t.equal(created.status, 201, JSON.stringify(created.body));
  const db = created.body;
  const send = (method: string, path: string) => fetch(`${api.url}${path}`, { method, headers: { ...json, authorization: `Bearer ${key}` }, body: '' });
  t.equal((await send('POST', `/v1/databases/${db.id}/wake`)).status, 200, 'wake');
  t.equal((await send('POST', `/v1/databases/${db.id}/suspend`)).status, 200, 'suspend');
  t.equal((await send('DELETE', `/v1/databases/${db.id}`)).status, 204, 'delete');
  const create = await send('POST', '/v1/databases');
  t.equal(create.status, 400, 'a route that needs a body still says so');
  const broken = await fetch(`${api.url}/v1/databases`, { method: 'POST', headers: { ...json, authorization: `Bearer ${key}` }, body: '{"user_id":' });
  t.equal(broken.status, 400, 'malformed JSON is still a 400');
});

t.test('every OpenAPI operation has its own readable operationId', async (t) => {
  const doc = (await api.request('GET', '/v1/openapi.json')).body;
  const ids: string[] = [];
  for (const ops of Object.values<Record<string, { operationId?: string }>>(doc.paths)) for (const op of Object.values(ops)) ids.push(op.operationId!);
  t.ok(ids.every((id) => /^[a-z][A-Za-z]+$/.test(id)), 'camelCase, present on all');
  t.equal(new Set(ids).size, ids.length, 'unique');
  const op = (path: string, method: string) => doc.paths[path][method].operationId;
  t.equal(op('/v1/databases', 'post'), 'createDatabase');
  t.equal(op('/v1/databases', 'get'), 'listDatabases');
  t.equal(op('/v1/databases/{id}', 'get'), 'getDatabase');
  t.equal(op('/v1/databases/{id}/suspend', 'post'), 'suspendDatabase');
  t.equal(op('/v1/databases/{id}/roles/{role}/reset_password', 'post'), 'resetPasswordDatabaseRole');
});

t.test('a database answer says which Postgres its compute runs', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'frank' } })).body;
  const install = api.gateway.core.installs.get();
  t.equal(db.pg_version, install.major, 'the major: the default region\'s');
  t.equal(db.postgres_version, install.version);
  t.match(db.postgres_version, /^\d+\.\d+$/);
  const shown = (await api.request('GET', `/v1/databases/${db.id}`, { key })).body;
  t.same([shown.pg_version, shown.postgres_version], [db.pg_version, db.postgres_version]);
});

t.test('metric label values are snake_case', async (t) => {
  // A cancel request with an unknown key, and a client that leaves at once, beside a refused login.
  const raw = (bytes: number[]) => new Promise<void>((resolve) => {
    const s = net.connect(api.gateway.proxyPort, '127.0.0.1', () => s.end(Buffer.from(bytes)));
    s.on('error', () => {});
    s.on('close', () => resolve());
  });
  await raw([0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2]);
  await raw([]);
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const values = [...text.matchAll(/^pgfleet_proxy_connections_total\{outcome="([^"]*)"\}/gm)].map((m) => m[1]!);
  t.ok(values.includes('cancel_request'), `outcomes seen: ${values.join(', ')}`);
  const labels = [...text.matchAll(/^pgfleet_(?:proxy|compute)_[a-z_]+\{([^}]*)\}/gm)].flatMap((m) => [...m[1]!.matchAll(/(\w+)="([^"]*)"/g)])
    .filter(([, name]) => !['route', 'method', 'le'].includes(name!)).map(([, , value]) => value!);
  t.ok(labels.length > 0);
  t.same(labels.filter((v) => !/^[a-z0-9_]+$/.test(v)), [], 'no spaces or capitals in label values (HTTP methods, routes and buckets aside)');
});
