// Bad input never reaches a 500: each case is a 400 (or 413/415) naming the field, in the one error shape.
// And the OpenAPI document is valid and lists every route.
import { Validator } from '@seriousme/openapi-schema-validator';
import t from 'tap';
import { ADMIN_KEY, type ApiHarness, startApi } from './api-client.ts';

let api: ApiHarness;
let partnerKey: string;
let dbId: string;
t.before(async () => {
  api = await startApi();
  partnerKey = (await api.partner()).key;
  dbId = (await api.request('POST', '/v1/databases', { key: partnerKey, body: { user_id: 'valid' } })).body.id;
});
t.teardown(() => api.stop());

const big = 'x'.repeat(10_000);
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** [method, path, body, the field the message must start with] */
type Case = [string, string | (() => string), unknown, string];

const createCases: Case[] = [
  [{}, 'user_id'],
  [{ user_id: 'a', extra: 1 }, 'extra'],
  [{ user_id: 'a', userId: 'a' }, 'userId'],
  [{ user_id: 123 }, 'user_id'],
  [{ user_id: null }, 'user_id'],
  [{ user_id: ['a'] }, 'user_id'],
  [{ user_id: { a: 1 } }, 'user_id'],
  [{ user_id: true }, 'user_id'],
  [{ user_id: '' }, 'user_id'],
  [{ user_id: big }, 'user_id'],
  [{ user_id: 'nul\u0000' }, 'user_id'],
  [{ user_id: 'line\nbreak' }, 'user_id'],
  [{ user_id: 'a', name: big }, 'name'],
  [{ user_id: 'a', name: 7 }, 'name'],
  [{ user_id: 'a', region: 'mars' }, 'region'],
  [{ user_id: 'a', region: '' }, 'region'],
  [{ user_id: 'a', region: big }, 'region'],
  [{ user_id: 'a', region: 5 }, 'region'],
  [{ user_id: 'a', role_name: 'Bad Name' }, 'role_name'],
  [{ user_id: 'a', role_name: 'pg_monitor' }, 'role_name'],
  [{ user_id: 'a', role_name: 'postgres' }, 'role_name'],
  [{ user_id: 'a', role_name: 'x'.repeat(64) }, 'role_name'],
  [{ user_id: 'a', role_name: 1 }, 'role_name'],
  [{ user_id: 'a', database_name: 'template0' }, 'database_name'],
  [{ user_id: 'a', database_name: '1abc' }, 'database_name'],
  [{ user_id: 'a', database_name: 'a-b' }, 'database_name'],
  [{ user_id: 'a', suspend_timeout_seconds: -1 }, 'suspend_timeout_seconds'],
  [{ user_id: 'a', suspend_timeout_seconds: 1.5 }, 'suspend_timeout_seconds'],
  [{ user_id: 'a', suspend_timeout_seconds: '30' }, 'suspend_timeout_seconds'],
  [{ user_id: 'a', suspend_timeout_seconds: 1e9 }, 'suspend_timeout_seconds'],
  [{ user_id: 'a', suspend_timeout_seconds: null }, 'suspend_timeout_seconds'],
  [{ user_id: 'a', pg_version: '17' }, 'pg_version'],
  [{ user_id: 'a', pg_version: 17.5 }, 'pg_version'],
  [{ user_id: 'a', pg_version: 0 }, 'pg_version'],
  [{ user_id: 'a', pg_version: 14 }, 'pg_version'],
  [{ user_id: 'a', pg_version: 99 }, 'pg_version'],
  [{ user_id: 'a', quotas: 'lots' }, 'quotas'],
  [{ user_id: 'a', quotas: [] }, 'quotas'],
  [{ user_id: 'a', quotas: { cpu: 1 } }, 'quotas.cpu'],
  [{ user_id: 'a', quotas: { storage_bytes: -1 } }, 'quotas.storage_bytes'],
  [{ user_id: 'a', quotas: { storage_bytes: 1.5 } }, 'quotas.storage_bytes'],
  [{ user_id: 'a', quotas: { storage_bytes: '1' } }, 'quotas.storage_bytes'],
  [{ user_id: 'a', quotas: { storage_bytes: 2 ** 60 } }, 'quotas.storage_bytes'],
  ['not json', 'body'],
  ['{"user_id": "a",}', 'body'],
  ['[]', 'body'],
  ['"user"', 'body'],
  ['null', 'body'],
  ['', 'body'],
].map(([body, field]) => ['POST', '/v1/databases', body, field as string]);

const cases: Case[] = [
  ...createCases,
  ['PATCH', () => `/v1/databases/${dbId}`, { name: 5 }, 'name'],
  ['PATCH', () => `/v1/databases/${dbId}`, { name: big }, 'name'],
  ['PATCH', () => `/v1/databases/${dbId}`, { owner: 'me' }, 'owner'],
  ['PATCH', () => `/v1/databases/${dbId}`, { pg_version: 18 }, 'pg_version'],
  ['PATCH', () => `/v1/databases/${dbId}`, { suspend_timeout_seconds: 'x' }, 'suspend_timeout_seconds'],
  ['PATCH', () => `/v1/databases/${dbId}`, { quotas: { storage_bytes: -5 } }, 'quotas.storage_bytes'],
  ['PATCH', () => `/v1/databases/${dbId}`, { quotas: { bogus: 1 } }, 'quotas.bogus'],
  ['POST', () => `/v1/databases/${dbId}/roles`, {}, 'name'],
  ['POST', () => `/v1/databases/${dbId}/roles`, { name: '' }, 'name'],
  ['POST', () => `/v1/databases/${dbId}/roles`, { name: 'Bad' }, 'name'],
  ['POST', () => `/v1/databases/${dbId}/roles`, { name: big }, 'name'],
  ['POST', () => `/v1/databases/${dbId}/roles`, { name: 'ok', admin: true }, 'admin'],
  ['GET', '/v1/databases?limit=0', undefined, 'limit'],
  ['GET', '/v1/databases?limit=1001', undefined, 'limit'],
  ['GET', '/v1/databases?limit=-1', undefined, 'limit'],
  ['GET', '/v1/databases?limit=abc', undefined, 'limit'],
  ['GET', '/v1/databases?cursor=garbage', undefined, 'cursor'],
  ['GET', `/v1/databases?cursor=${b64(['x', 'y'])}`, undefined, 'cursor'],
  ['GET', `/v1/databases?cursor=${b64(['2024-02-30 00:00:00+00', 'db-quiet-river-000000'])}`, undefined, 'cursor'],
  ['GET', `/v1/databases?cursor=${b64(['1', 'db-quiet-river-000000'])}`, undefined, 'cursor'],
  ['GET', `/v1/databases?cursor=${b64(['2024-01-01 00:00:00+00', 'db\u0000'])}`, undefined, 'cursor'],
  ['GET', `/v1/databases?cursor=${b64({ a: 1 })}`, undefined, 'cursor'],
  ['GET', `/v1/databases?cursor=${big}`, undefined, 'cursor'],
  ['GET', '/v1/databases?cursor=a%00b', undefined, 'cursor'],
  ['GET', `/v1/databases?user_id=${'u'.repeat(300)}`, undefined, 'user_id'],
  ['GET', '/v1/databases/db%00x', undefined, 'id'],
  ['GET', `/v1/databases/${'d'.repeat(100)}`, undefined, 'id'],
  ['POST', () => `/v1/databases/${dbId}/roles/a%00b/reset_password`, undefined, 'role'],
  ['POST', '/v1/databases', { user_id: 'a', labels: { k: 5 } }, 'labels.k'],
  ['PATCH', () => `/v1/databases/${dbId}`, { labels: 'gold' }, 'labels'],
  ['POST', '/v1/migrations', { sql: 'SELECT 1' }, 'name'],
  ['POST', '/v1/migrations', { name: 'bad name', sql: 'SELECT 1' }, 'name'],
  ['POST', '/v1/migrations', { name: 'm', sql: 'SELECT 1', concurrency: 0 }, 'concurrency'],
  ['POST', '/v1/migrations', { name: 'm', sql: 'SELECT 1', max_failures: 0 }, 'max_failures'],
  ['POST', '/v1/migrations', { name: 'm', sql: 'SELECT 1', selector: { ids: [] } }, 'selector.ids'],
  ['POST', '/v1/migrations', { name: 'm', sql: 'SELECT 1', selector: { region: 'mars', colour: 'red' } }, 'selector.colour'],
  ['POST', '/v1/templates', { name: 'x' }, 'database_id'],
  ['POST', '/v1/templates', { name: 'bad name', database_id: 'db-x' }, 'name'],
];

const partnerCases: Case[] = [
  ['POST', '/v1/partners', {}, 'name'],
  ['POST', '/v1/partners', { name: '' }, 'name'],
  ['POST', '/v1/partners', { name: big }, 'name'],
  ['POST', '/v1/partners', { name: 'x', api_key: 'mine' }, 'api_key'],
  ['DELETE', '/v1/partners/pt%00', undefined, 'id'],
];

t.test('bad input: 400 naming the field, never a 500', async (t) => {
  for (const [key, list] of [[() => partnerKey, cases], [() => ADMIN_KEY, partnerCases]] as const) {
    for (const [method, pathOf, body, field] of list) {
      const path = typeof pathOf === 'function' ? pathOf() : pathOf;
      const label = `${method} ${path.slice(0, 60)} ${JSON.stringify(body)?.slice(0, 60)}`;
      const res = await api.request(method, path, { key: key(), body, headers: body === '' ? { 'content-type': 'application/json' } : {} });
      t.equal(res.status, 400, label);
      t.same(Object.keys(res.body), ['error'], `${label}: the error shape`);
      t.same(Object.keys(res.body.error).sort(), ['code', 'message']);
      t.equal(res.body.error.code, 'bad_request');
      t.ok(res.body.error.message.startsWith(`${field}: `), `${label}: "${res.body.error.message}" names ${field}`);
      t.notMatch(res.body.error.message, /\n\s+at /, 'no stack trace');
    }
  }
  const { rows } = await api.gateway.core.catalog.query("SELECT count(*)::int AS n FROM databases WHERE user_id <> 'valid'");
  t.equal(rows[0].n, 0, 'no bad request made a database');
});

t.test('other statuses keep the shape: 413, 415, 404 for unknown routes', async (t) => {
  const tooBig = await api.request('POST', '/v1/databases', { key: partnerKey, body: { user_id: 'x'.repeat(70_000) } });
  t.equal(tooBig.status, 413);
  t.equal(tooBig.body.error.code, 'payload_too_large');
  const text = await api.request('POST', '/v1/databases', { key: partnerKey, body: '<user_id>a</user_id>', headers: { 'content-type': 'application/xml' } });
  t.equal(text.status, 415);
  t.equal(text.body.error.code, 'unsupported_media_type');
  const nowhere = await api.request('GET', '/v1/nowhere', { key: partnerKey });
  t.equal(nowhere.status, 404);
  t.same(nowhere.body, { error: { code: 'not_found', message: 'no route GET /v1/nowhere' } });
});

t.test('the OpenAPI document validates and lists every route', async (t) => {
  const res = await api.request('GET', '/v1/openapi.json');
  t.equal(res.status, 200);
  const doc = res.body;
  const validator = new Validator();
  const result = await validator.validate(doc);
  t.ok(result.valid, `valid OpenAPI ${doc.openapi}: ${JSON.stringify(result.errors)?.slice(0, 500)}`);
  const operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
    .flatMap(([path, ops]) => Object.keys(ops).filter((m) => m !== 'parameters').map((m) => `${m.toUpperCase()} ${path}`))
    .sort();
  t.same(operations, [
    'DELETE /v1/databases/{id}',
    'DELETE /v1/databases/{id}/branches/{branch}',
    'DELETE /v1/jwt-issuer',
    'DELETE /v1/partners/{id}',
    'DELETE /v1/templates/{id}',
    'DELETE /v1/webhooks/{id}',
    'GET /metrics/usage',
    'GET /v1/audit',
    'GET /v1/databases',
    'GET /v1/databases/{id}',
    'GET /v1/databases/{id}/branches',
    'GET /v1/databases/{id}/branches/{branch}',
    'GET /v1/databases/{id}/compute_sizes',
    'GET /v1/databases/{id}/usage',
    'GET /v1/events',
    'GET /v1/events/types',
    'GET /v1/failures',
    'GET /v1/fleet',
    'GET /v1/jwt-issuer',
    'GET /v1/migrations',
    'GET /v1/migrations/{id}',
    'GET /v1/migrations/{id}/databases',
    'GET /v1/nodes',
    'GET /v1/partners',
    'GET /v1/templates',
    'GET /v1/templates/{id}',
    'GET /v1/tls/ca.crt',
    'GET /v1/usage',
    'GET /v1/usage/partners',
    'GET /v1/webhooks',
    'GET /v1/webhooks/{id}',
    'GET /v1/webhooks/{id}/deliveries',
    'GET /v1/webhooks/{id}/deliveries/{delivery}',
    'GET /v1/whoami',
    'PATCH /v1/databases/{id}',
    'PATCH /v1/databases/{id}/branches/{branch}',
    'PATCH /v1/partners/{id}',
    'POST /v1/databases',
    'POST /v1/databases/{id}/branches',
    'POST /v1/databases/{id}/branches/{branch}/reset',
    'POST /v1/databases/{id}/restore',
    'POST /v1/databases/{id}/roles',
    'POST /v1/databases/{id}/roles/{role}/reset_password',
    'POST /v1/databases/{id}/suspend',
    'POST /v1/databases/{id}/tokens',
    'POST /v1/databases/{id}/wake',
    'POST /v1/keys/rotate',
    'POST /v1/migrations',
    'POST /v1/migrations/{id}/cancel',
    'POST /v1/migrations/{id}/pause',
    'POST /v1/migrations/{id}/resume',
    'POST /v1/neon/reconcile',
    'POST /v1/nodes/{id}/drain',
    'POST /v1/partners',
    'POST /v1/partners/{id}/keys',
    'POST /v1/templates',
    'POST /v1/webhooks',
    'PUT /v1/jwt-issuer',
  ]);
  const create = doc.paths['/v1/databases'].post;
  t.ok(create.parameters.some((p: { in: string; name: string }) => p.in === 'header' && p.name === 'idempotency-key'), 'Idempotency-Key is documented');
  const fields = create.responses['201'].content['application/json'].schema.properties;
  for (const name of ['connection_uri', 'connection_uri_no_sni', 'libpq_connection_uri', 'jdbc_url', 'pooled_connection_uri', 'pooled_jdbc_url', 'ca_certificate_url']) {
    t.match(fields[name]?.description, /\w/, `${name} is described`);
  }
  t.match(fields.connection_uri.description, /equals connection_uri_no_sni/, 'connection_uri says when it equals connection_uri_no_sni');
  t.match(doc.paths['/v1/databases/{id}/branches/{branch}'].get.responses['200'].content['application/json'].schema.properties.pooled_connection_uri?.description, /pooler/,
    'branch answers carry the pooled URIs');
  t.same(create.security, [{ apiKey: [] }]);
  t.ok(doc.components.schemas.Error, 'the error shape is a component');

  const docs = await fetch(`${api.url}/docs`);
  t.equal(docs.status, 200);
  t.match(await docs.text(), /swagger/i, 'a docs page');
});
