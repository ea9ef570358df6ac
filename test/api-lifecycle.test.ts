// The provisioning API end to end: real HTTP against a running pgfleet, real computes behind it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { branchRefOf, routeByDatabase } from '../src/catalog/routes.ts';
import { NAME_PATTERN } from '../src/names.ts';
import { matchesVerifier, parseScramVerifier } from '../src/scram-verifier.ts';
import { ADMIN_KEY, type ApiHarness, startApi } from './api-client.ts';
import { catalogStatements } from './helpers.ts';

let api: ApiHarness;
t.before(async () => {
  api = await startApi();
});
t.teardown(() => api.stop());

/** The password answers the role's stored SCRAM verifier (what the proxy will check). */
async function passwordMatches(databaseId: string, role: string, password: string): Promise<boolean> {
  const { rows } = await api.gateway.core.catalog.query('SELECT scram_verifier FROM roles WHERE database_id = $1 AND name = $2', [databaseId, role]);
  return matchesVerifier(parseScramVerifier(rows[0].scram_verifier)!, password);
}

async function dataDirOf(databaseId: string): Promise<string> {
  const route = await routeByDatabase(api.gateway.core.catalog, databaseId);
  return api.gateway.core.local.dataDirOf(branchRefOf(route!));
}

t.test('health and readiness answer without a key', async (t) => {
  t.same((await api.request('GET', '/healthz')).body, { status: 'ok' });
  const ready = await api.request('GET', '/readyz');
  t.equal(ready.status, 200);
  t.same(ready.body, { status: 'ready' });
});

t.test('a database from create to delete', async (t) => {
  const { key } = await api.partner();
  const created = await api.request('POST', '/v1/databases', {
    key,
    body: { user_id: 'alice', name: 'Alice app', role_name: 'alice', database_name: 'shop', suspend_timeout_seconds: 60, quotas: { storage_bytes: 1_000_000 } },
  });
  t.equal(created.status, 201);
  const db = created.body;
  t.match(db, {
    user_id: 'alice', name: 'Alice app', region: 'local', role: 'alice', database: 'shop', roles: ['alice'],
    suspend_timeout_seconds: 60, quotas: { storage_bytes: 1_000_000 }, state: 'suspended', last_active_at: null,
  });
  t.match(db.endpoint_id, NAME_PATTERN);
  t.match(db.endpoint_id, /^ep-[a-z]+-[a-z]+-\d{6}$/);
  const { domain } = api.gateway.core.config;
  const { proxyPort } = api.gateway;
  t.equal(db.host, `${db.endpoint_id}.${domain}`);
  t.equal(db.port, proxyPort);
  // The default domain is under localhost: the URI to hand out is the options form on host localhost.
  const tls = `sslmode=require&sslrootcert=${api.gateway.caPath}`;
  t.equal(db.connection_uri_sni, `postgresql://alice:${db.password}@${db.endpoint_id}.${domain}:${proxyPort}/shop?${tls}`);
  t.equal(db.connection_uri_no_sni, `postgresql://alice:${db.password}@localhost:${proxyPort}/shop?${tls}&options=endpoint%3D${db.endpoint_id}`);
  t.equal(db.connection_uri, db.connection_uri_no_sni);
  t.equal(db.jdbc_url, `jdbc:postgresql://localhost:${proxyPort}/shop?user=alice&password=${db.password}&${tls}&options=endpoint%3D${db.endpoint_id}`);
  t.equal(db.pooled_connection_uri, `postgresql://alice:${db.password}@localhost:${proxyPort}/shop?${tls}&options=endpoint%3D${db.endpoint_id}-pooler`);
  t.equal(db.pooled_connection_uri_no_sni, db.pooled_connection_uri);
  t.equal(db.pooled_host, `${db.endpoint_id}-pooler.${domain}`);
  t.equal(db.pool_size, null, 'the gateway default pool size');
  t.ok(await passwordMatches(db.id, 'alice', db.password), 'the password answers the stored verifier');
  t.ok(!Number.isNaN(Date.parse(db.created_at)));

  const got = await api.request('GET', `/v1/databases/${db.id}`, { key });
  t.equal(got.status, 200);
  t.notOk('password' in got.body, 'the password is shown at create only');
  t.notOk(JSON.stringify(got.body).includes(db.password));
  t.same(got.body, Object.fromEntries(Object.entries(db).filter(([k]) => !['password', 'connection_uri', 'connection_uri_sni', 'connection_uri_no_sni', 'jdbc_url', 'libpq_connection_uri', 'pooled_connection_uri', 'pooled_connection_uri_no_sni', 'pooled_jdbc_url', 'pooled_libpq_connection_uri'].includes(k))));

  const list = await api.request('GET', '/v1/databases?user_id=alice', { key });
  t.same(list.body.databases.map((d: { id: string }) => d.id), [db.id]);
  t.equal(list.body.next_cursor, null);
  t.same((await api.request('GET', '/v1/databases?user_id=bob', { key })).body.databases, []);

  const patched = await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { name: null, suspend_timeout_seconds: 0, quotas: { max_connections: 5, storage_bytes: null }, pool_size: 7 } });
  t.equal(patched.body.pool_size, 7, 'pool_size set by PATCH');
  t.equal(patched.status, 200);
  t.match(patched.body, { name: null, suspend_timeout_seconds: 0, quotas: { storage_bytes: null, max_connections: 5 } });

  // Wake: the compute runs, the role and database the API named exist in it.
  const woken = await api.request('POST', `/v1/databases/${db.id}/wake`, { key });
  t.equal(woken.status, 200);
  t.equal(woken.body.state, 'running');
  const dir = await dataDirOf(db.id);
  t.ok(fs.existsSync(path.join(dir, 'pgdata', 'PG_VERSION')), 'the data directory exists once woken');
  const route = await routeByDatabase(api.gateway.core.catalog, db.id);
  // A session as the proxy holds one: a lease on the compute, then the role and database the API named.
  const lease = await api.gateway.core.computes.acquire(api.gateway.core.targetFor(route!));
  t.equal(lease.address.kind, 'unix');
  const client = new pg.Client({ host: path.dirname((lease.address as { socketPath: string }).socketPath), port: 5432, user: 'alice', database: 'shop' });
  await client.connect();
  const who = await client.query('SELECT current_user, current_database(), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su');
  t.same(who.rows[0], { current_user: 'alice', current_database: 'shop', su: false });
  await client.end();
  lease.release();
  const seen = (await api.request('GET', `/v1/databases/${db.id}`, { key })).body;
  t.ok(Date.parse(seen.last_active_at) >= Date.parse(db.created_at), 'the session made it active');

  // Another role, then a new password for it.
  const role = await api.request('POST', `/v1/databases/${db.id}/roles`, { key, body: { name: 'reader' } });
  t.equal(role.status, 201);
  t.match(role.body, { database_id: db.id, role: 'reader', database: 'shop', host: db.host });
  t.match(role.body.connection_uri_sni, `postgresql://reader:${role.body.password}@${db.host}:`);
  t.ok(await passwordMatches(db.id, 'reader', role.body.password));
  t.equal((await api.request('POST', `/v1/databases/${db.id}/roles`, { key, body: { name: 'reader' } })).status, 409, 'a role twice is a conflict');
  const bad = await api.request('POST', `/v1/databases/${db.id}/roles`, { key, body: { name: 'pg_monitor' } });
  t.equal(bad.status, 400);
  t.match(bad.body.error.message, /^name: /);
  const reset = await api.request('POST', `/v1/databases/${db.id}/roles/reader/reset_password`, { key });
  t.equal(reset.status, 200);
  t.not(reset.body.password, role.body.password);
  t.ok(await passwordMatches(db.id, 'reader', reset.body.password), 'the new password works');
  t.notOk(await passwordMatches(db.id, 'reader', role.body.password), 'the old one does not');
  t.equal((await api.request('POST', `/v1/databases/${db.id}/roles/nobody/reset_password`, { key })).status, 404);
  t.same((await api.request('GET', `/v1/databases/${db.id}`, { key })).body.roles, ['alice', 'reader']);

  const suspended = await api.request('POST', `/v1/databases/${db.id}/suspend`, { key });
  t.equal(suspended.body.state, 'suspended');
  t.equal(api.gateway.core.local.status(branchRefOf(route!)), 'stopped');

  await api.request('POST', `/v1/databases/${db.id}/wake`, { key });
  const deleted = await api.request('DELETE', `/v1/databases/${db.id}`, { key });
  t.equal(deleted.status, 204);
  t.notOk(fs.existsSync(dir), 'the data directory is gone');
  t.equal(api.gateway.core.computes.info(route!.branchId).state, 'suspended', 'the compute is stopped');
  const gone = await api.request('GET', `/v1/databases/${db.id}`, { key });
  t.equal(gone.status, 404);
  t.same(gone.body, { error: { code: 'not_found', message: `database "${db.id}" not found` } });
  t.equal((await api.request('DELETE', `/v1/databases/${db.id}`, { key })).status, 404);
});

t.test('partners: operator only, keys shown once and rotated, delete takes the databases along', async (t) => {
  const created = await api.request('POST', '/v1/partners', { key: ADMIN_KEY, body: { name: 'rotating' } });
  t.equal(created.status, 201);
  const { id, api_key: firstKey } = created.body;
  t.match(firstKey, /^pgf_live_/);
  const listed = await api.request('GET', '/v1/partners', { key: ADMIN_KEY });
  t.ok(listed.body.partners.some((p: { id: string; name: string }) => p.id === id && p.name === 'rotating'));
  t.notOk(JSON.stringify(listed.body).includes(firstKey), 'the list never shows a key');
  const { rows } = await api.gateway.core.catalog.query('SELECT key_hash FROM api_keys WHERE partner_id = $1', [id]);
  t.equal(rows.length, 1);
  t.not(rows[0].key_hash, firstKey, 'only a hash is kept');
  t.equal(rows[0].key_hash, crypto.createHash('sha256').update(firstKey).digest('hex'));

  // A partner key may not manage partners; the operator key may not manage databases.
  t.equal((await api.request('GET', '/v1/partners', { key: firstKey })).status, 403);
  t.equal((await api.request('POST', '/v1/partners', { key: firstKey, body: { name: 'x' } })).status, 403);
  t.equal((await api.request('DELETE', `/v1/partners/${id}`, { key: firstKey })).status, 403);
  t.equal((await api.request('POST', '/v1/databases', { key: ADMIN_KEY, body: { user_id: 'u' } })).status, 403);
  for (const key of [undefined, 'not-a-key', `${firstKey}x`]) {
    const res = await api.request('GET', '/v1/databases', { key });
    t.equal(res.status, 401);
    t.equal(res.body.error.code, 'unauthorized');
  }
  t.equal((await api.request('GET', '/v1/databases', { headers: { authorization: `Basic ${firstKey}` } })).status, 401);

  const db = (await api.request('POST', '/v1/databases', { key: firstKey, body: { user_id: 'carol' } })).body;
  const rotated = await api.request('POST', `/v1/partners/${id}/keys`, { key: ADMIN_KEY });
  t.equal(rotated.status, 201);
  const secondKey = rotated.body.api_key;
  t.not(secondKey, firstKey);
  t.equal((await api.request('GET', `/v1/databases/${db.id}`, { key: firstKey })).status, 401, 'the old key stops working');
  t.equal((await api.request('GET', `/v1/databases/${db.id}`, { key: secondKey })).status, 200, 'the new key works');
  t.equal((await api.request('POST', '/v1/partners/pt-0000000000000000/keys', { key: ADMIN_KEY })).status, 404);

  await api.request('POST', `/v1/databases/${db.id}/wake`, { key: secondKey });
  const dir = await dataDirOf(db.id);
  t.ok(fs.existsSync(dir));
  t.equal((await api.request('DELETE', `/v1/partners/${id}`, { key: ADMIN_KEY })).status, 204);
  t.notOk(fs.existsSync(dir), "the partner's databases are removed with it");
  t.equal((await api.request('GET', '/v1/databases', { key: secondKey })).status, 401);
  t.equal((await api.request('DELETE', `/v1/partners/${id}`, { key: ADMIN_KEY })).status, 404);
  const { rows: left } = await api.gateway.core.catalog.query('SELECT count(*)::int AS n FROM databases WHERE partner_id = $1', [id]);
  t.equal(left[0].n, 0);
});

t.test('a key that authenticated costs no catalog read until its partner\'s keys are revoked', async (t) => {
  const { id, key } = await api.partner('keeps');
  const keyReads = async (fn: () => Promise<unknown>) => (await catalogStatements(api.gateway.core.catalog, fn)).filter((s) => /FROM api_keys/.test(s)).length;
  t.equal(await keyReads(() => api.request('GET', '/v1/databases', { key })), 1, 'its first request reads the key');
  t.equal(await keyReads(async () => {
    for (let i = 0; i < 3; i++) t.equal((await api.request('GET', '/v1/databases', { key })).status, 200);
  }), 0, 'later requests read no key');
  const unknown = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
  t.equal(await keyReads(async () => {
    for (let i = 0; i < 2; i++) t.equal((await api.request('GET', '/v1/databases', { key: unknown })).status, 401);
  }), 2, 'an unknown key is read every time (nothing is kept of it)');
  const rotated = await api.request('POST', `/v1/partners/${id}/keys`, { key: ADMIN_KEY });
  t.equal((await api.request('GET', '/v1/databases', { key })).status, 401, 'the kept key is refused at once after a rotation');
  t.equal((await api.request('GET', '/v1/databases', { key: rotated.body.api_key })).status, 200);
});

t.test('the rate limit answers 429 per key, in the error shape', async (t) => {
  const limited = await startApi({ PGFLEET_API_RATE_LIMIT: '5' });
  t.teardown(() => limited.stop());
  const a = await limited.partner('a');
  const b = await limited.partner('b');
  const statuses: number[] = [];
  let last;
  for (let i = 0; i < 7; i++) {
    last = await limited.request('GET', '/v1/databases', { key: a.key });
    statuses.push(last.status);
  }
  t.same(statuses, [200, 200, 200, 200, 200, 429, 429]);
  t.equal(last!.body.error.code, 'rate_limited');
  t.match(last!.body.error.message, /retry/i);
  t.ok(last!.headers.get('retry-after'), 'Retry-After is set');
  t.equal((await limited.request('GET', '/v1/databases', { key: b.key })).status, 200, 'another key has its own budget');
  t.equal((await limited.request('GET', '/healthz')).status, 200, 'health checks are not limited');
});
