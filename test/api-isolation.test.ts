// Partner isolation and idempotent create, through real HTTP against a running pgfleet.
import crypto from 'node:crypto';
import fs from 'node:fs';
import t from 'tap';
import { branchRefOf, routeByDatabase } from '../src/catalog/routes.ts';
import { type ApiHarness, startApi } from './api-client.ts';

let api: ApiHarness;
t.before(async () => {
  api = await startApi();
});
t.teardown(() => api.stop());

const countDatabases = async (partnerId: string, userId: string): Promise<number> =>
  (await api.gateway.core.catalog.query('SELECT count(*)::int AS n FROM databases WHERE partner_id = $1 AND user_id = $2', [partnerId, userId])).rows[0].n;

t.test("every route with another partner's database answers 404, exactly like a missing one", async (t) => {
  const a = await api.partner('a');
  const b = await api.partner('b');
  const db = (await api.request('POST', '/v1/databases', { key: a.key, body: { user_id: 'alice' } })).body;
  await api.request('POST', `/v1/databases/${db.id}/wake`, { key: a.key });
  const missing = 'db-quiet-river-000000';

  const routes: [string, (id: string) => string, unknown][] = [
    ['GET', (id) => `/v1/databases/${id}`, undefined],
    ['PATCH', (id) => `/v1/databases/${id}`, { name: 'mine now', quotas: { max_connections: 0 } }],
    ['POST', (id) => `/v1/databases/${id}/suspend`, undefined],
    ['POST', (id) => `/v1/databases/${id}/wake`, undefined],
    ['POST', (id) => `/v1/databases/${id}/roles`, { name: 'intruder' }],
    ['POST', (id) => `/v1/databases/${id}/roles/app_owner/reset_password`, undefined],
    ['DELETE', (id) => `/v1/databases/${id}`, undefined],
  ];
  for (const [method, url, body] of routes) {
    const theirs = await api.request(method, url(db.id), { key: b.key, body });
    const none = await api.request(method, url(missing), { key: b.key, body });
    t.equal(theirs.status, 404, `${method} ${url(':id')} with another partner's id`);
    t.same(theirs.body, JSON.parse(JSON.stringify(none.body).replaceAll(missing, db.id)), `${method} ${url(':id')}: the same answer as for a missing id`);
  }
  const listed = await api.request('GET', '/v1/databases?user_id=alice', { key: b.key });
  t.same(listed.body.databases, [], "another partner's databases are not listed");

  // Nothing changed for the owner.
  const mine = await api.request('GET', `/v1/databases/${db.id}`, { key: a.key });
  t.equal(mine.status, 200);
  t.match(mine.body, { name: null, roles: ['app_owner'], state: 'running', quotas: {} });
  const route = await routeByDatabase(api.gateway.core.catalog, db.id);
  t.ok(fs.existsSync(api.gateway.core.local.dataDirOf(branchRefOf(route!))), 'the data is still there');
  const { rows } = await api.gateway.core.catalog.query('SELECT scram_verifier FROM roles WHERE database_id = $1', [db.id]);
  t.equal(rows.length, 1);
});

t.test('ten concurrent retries with one Idempotency-Key make one database and the same answer', async (t) => {
  const p = await api.partner('retrying');
  const key = crypto.randomUUID();
  const body = { user_id: 'dora', name: 'retried', quotas: { max_connections: 3 } };
  const answers = await Promise.all(Array.from({ length: 10 }, () =>
    api.request('POST', '/v1/databases', { key: p.key, body, headers: { 'Idempotency-Key': key } })));
  t.same(answers.map((a) => a.status), Array(10).fill(201));
  const first = answers[0]!.body;
  for (const a of answers) t.same(a.body, first, 'the identical answer, password included');
  t.equal(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true').length, 9, 'nine of them are replays');
  t.equal(await countDatabases(p.id, 'dora'), 1, 'one database');

  // A later retry, with the body's keys in another order, is the same request.
  const again = await api.request('POST', '/v1/databases', {
    key: p.key, body: { quotas: { max_connections: 3 }, name: 'retried', user_id: 'dora' }, headers: { 'Idempotency-Key': key },
  });
  t.equal(again.status, 201);
  t.same(again.body, first);

  // The catalog keeps neither the key nor the password in clear.
  const { rows } = await api.gateway.core.catalog.query('SELECT * FROM idempotency_keys WHERE partner_id = $1', [p.id]);
  t.equal(rows.length, 1);
  const stored = JSON.stringify(rows[0]) + rows[0].response.toString('latin1');
  t.notOk(stored.includes(key), 'the idempotency key is stored as a hash');
  t.notOk(stored.includes(first.password), 'the password is not stored in clear');
  t.notOk(stored.includes('dora'), 'the answer is sealed');
  t.ok(Date.parse(rows[0].expires_at) - Date.now() > 23 * 3600_000, 'kept for 24 hours');
});

t.test('the same key with another body is a 409; other partners and new keys are independent', async (t) => {
  const p = await api.partner('p');
  const q = await api.partner('q');
  const key = crypto.randomUUID();
  const first = await api.request('POST', '/v1/databases', { key: p.key, body: { user_id: 'eve' }, headers: { 'Idempotency-Key': key } });
  t.equal(first.status, 201);
  const other = await api.request('POST', '/v1/databases', { key: p.key, body: { user_id: 'mallory' }, headers: { 'Idempotency-Key': key } });
  t.equal(other.status, 409);
  t.equal(other.body.error.code, 'conflict');
  t.match(other.body.error.message, /^Idempotency-Key: /);
  t.equal(await countDatabases(p.id, 'mallory'), 0);

  const theirs = await api.request('POST', '/v1/databases', { key: q.key, body: { user_id: 'eve' }, headers: { 'Idempotency-Key': key } });
  t.equal(theirs.status, 201, "another partner's use of the same key is its own");
  t.not(theirs.body.id, first.body.id);
  t.equal(theirs.headers.get('idempotent-replayed'), null);

  const without = await api.request('POST', '/v1/databases', { key: p.key, body: { user_id: 'eve' } });
  t.not(without.body.id, first.body.id, 'without a key, each create is new');
  t.equal(await countDatabases(p.id, 'eve'), 2);
});

t.test('a failed first request frees its key; an expired key is forgotten', async (t) => {
  const p = await api.partner('failing');
  const key = crypto.randomUUID();
  for (let i = 0; i < 2; i++) {
    const res = await api.request('POST', '/v1/databases', { key: p.key, body: { user_id: 'finn', region: 'atlantis' }, headers: { 'Idempotency-Key': key } });
    t.equal(res.status, 400, 'the error is not stored: the retry runs again');
    t.match(res.body.error.message, /^region: /);
  }
  const { rows } = await api.gateway.core.catalog.query('SELECT count(*)::int AS n FROM idempotency_keys WHERE partner_id = $1', [p.id]);
  t.equal(rows[0].n, 0);

  const made = await api.request('POST', '/v1/databases', { key: p.key, body: { user_id: 'finn' }, headers: { 'Idempotency-Key': key } });
  t.equal(made.status, 201);
  await api.gateway.core.catalog.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE partner_id = $1`, [p.id]);
  const after = await api.request('POST', '/v1/databases', { key: p.key, body: { user_id: 'finn' }, headers: { 'Idempotency-Key': key } });
  t.equal(after.status, 201);
  t.not(after.body.id, made.body.id, 'after expiry the key makes a new database');
  t.equal(await countDatabases(p.id, 'finn'), 2);

  const bad = await api.request('POST', '/v1/databases', { key: p.key, body: { user_id: 'finn' }, headers: { 'Idempotency-Key': 'x'.repeat(256) } });
  t.equal(bad.status, 400);
  t.match(bad.body.error.message, /^Idempotency-Key: /);
});
