// The audit log: every mutation route of the API leaves an entry (whatever its outcome), with the
// key's id and never the key; partners see their own, the operator all; entries are purged after
// PGFLEET_AUDIT_RETENTION. And the operator's reads: databases across partners, usage per partner, whoami.
import t from 'tap';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { until } from './helpers.ts';
import { loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { recordNodeDrained, recordNodeLost } from '../src/events/node-events.ts';

const api = await startApi();
t.teardown(() => api.stop());
const acme = await api.partner('acme');
const other = await api.partner('other');
const { catalog } = api.gateway.core;
const audit = async (query: string, key = ADMIN_KEY) => (await api.request('GET', `/v1/audit?${query}`, { key })).body.entries as any[];

t.test('every mutation route of the OpenAPI document is audited, whatever its answer', async (t) => {
  const doc = (await api.request('GET', '/v1/openapi.json')).body;
  const mutations: { method: string; path: string; operationId: string }[] = [];
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    for (const method of ['post', 'put', 'patch', 'delete']) if (ops[method]) mutations.push({ method: method.toUpperCase(), path, operationId: ops[method].operationId });
  }
  t.ok(mutations.length >= 20, `${mutations.length} mutation routes`);
  for (const m of mutations) {
    const url = m.path.replace(/\{[^}]+\}/g, (p) => (p === '{delivery}' ? '1' : 'x-missing'));
    const requestId = `audit-${m.operationId}`;
    const res = await api.request(m.method, url, { key: acme.key, body: m.method === 'DELETE' ? undefined : {}, headers: { 'x-request-id': requestId, 'x-pgfleet-client': 'audit-test' } });
    t.equal(res.headers.get('x-request-id'), requestId, `${m.operationId}: the request id comes back`);
    // Written once the answer is sent.
    let entry: any;
    await until(`the audit entry of ${m.method} ${m.path} (${m.operationId})`, async () => {
      entry = (await audit(`action=${m.operationId}`)).find((e) => e.request_id === requestId);
      return entry !== undefined;
    }, 10_000);
    t.match(entry, { actor: 'partner', partner_id: acme.id, key_id: /^key-[0-9a-f]{16}$/, client: 'audit-test', method: m.method, status: res.status, source_address: '127.0.0.1' },
      `${m.operationId}: ${res.status}`);
    t.equal(entry.result, res.status < 400 ? 'ok' : res.body.error.code);
  }
});

t.test('who changed a quota: key id, target, the change; secrets never kept; partners see their own', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice' } })).body;
  await api.request('PATCH', `/v1/databases/${db.id}`, { key: acme.key, body: { quotas: { storage_bytes: 12345 } } });
  const hook = await api.request('POST', '/v1/webhooks', { key: acme.key, body: { url: 'https://hooks.example.com/x', events: ['*'], secret: `whsec_${Buffer.alloc(32, 7).toString('base64')}` } });
  t.equal(hook.status, 201);
  await until('the entries', async () => (await audit('action=createWebhook&result=ok', acme.key)).length > 0 && (await audit(`action=updateDatabase&target=${db.id}`, acme.key)).length > 0);
  const [patch] = await audit(`action=updateDatabase&target=${db.id}&result=ok`, acme.key);
  t.match(patch, { target: db.id, route: '/v1/databases/:id', request: { quotas: { storage_bytes: 12345 } }, result: 'ok' });
  const created = (await audit(`action=createDatabase&result=ok`, acme.key)).find((e) => e.target === db.id);
  t.ok(created, 'a create names what it made');
  const [webhook] = await audit('action=createWebhook&result=ok', acme.key);
  t.equal(webhook.request.secret, '[redacted]');
  const { rows } = await catalog.query('SELECT count(*)::int AS n FROM audit_log WHERE request::text LIKE $1 OR request::text LIKE $2 OR key_id LIKE $3',
    [`%${hook.body.secret.slice(6, 20)}%`, `%${acme.key.slice(9)}%`, '%pgf_live%']);
  t.equal(rows[0].n, 0, 'no key and no secret anywhere in the log');
  t.same(await audit(`target=${db.id}`, other.key), [], "another partner sees none of acme's entries");
  t.ok((await audit(`target=${db.id}`)).length >= 2, 'the operator sees them');
  t.equal((await api.request('GET', '/v1/audit?partner_id=x', { key: acme.key })).status, 400);
  const failed = await audit('result=error&limit=1', acme.key);
  t.equal(failed.length, 1);
  t.not(failed[0].result, 'ok');
  // Newest first, a page at a time.
  const page = await api.request('GET', '/v1/audit?limit=2', { key: acme.key });
  const next = await api.request('GET', `/v1/audit?limit=2&cursor=${page.body.next_cursor}`, { key: acme.key });
  t.ok(new Date(page.body.entries[1].at) >= new Date(next.body.entries[0].at));
});

t.test("the operator's reads: every partner's databases by search, a database as its partner sees it, what it did for a partner", async (t) => {
  const theirs = (await api.request('POST', '/v1/databases', { key: other.key, body: { user_id: 'mallory', name: 'Mallory shop' } })).body;
  const all = await api.request('GET', '/v1/databases', { key: ADMIN_KEY });
  t.ok(all.body.databases.some((d: any) => d.id === theirs.id && d.partner_id === other.id), 'across partners');
  for (const q of [theirs.id, theirs.endpoint_id, `${theirs.endpoint_id}-pooler`, 'mallory', 'MALLORY sh']) {
    const found = await api.request('GET', `/v1/databases?q=${encodeURIComponent(q)}`, { key: ADMIN_KEY });
    t.same(found.body.databases.map((d: any) => d.id), [theirs.id], `q=${q}`);
  }
  t.same((await api.request('GET', `/v1/databases?q=mallory`, { key: acme.key })).body.databases, [], 'a partner searches only its own');
  t.equal((await api.request('GET', `/v1/databases/${theirs.id}`, { key: ADMIN_KEY })).body.user_id, 'mallory');
  t.equal((await api.request('GET', `/v1/databases/${theirs.id}/branches`, { key: ADMIN_KEY })).body.branches.length, 1);
  t.equal((await api.request('POST', `/v1/databases/${theirs.id}/suspend`, { key: ADMIN_KEY })).status, 200);
  t.equal((await api.request('PATCH', `/v1/databases/${theirs.id}`, { key: ADMIN_KEY, body: { name: 'x' } })).status, 403, 'but it changes nothing of theirs');
  await until('the entry', async () => (await audit(`action=suspendDatabase&target=${theirs.id}`, other.key)).length > 0);
  const [entry] = await audit(`action=suspendDatabase&target=${theirs.id}`, other.key);
  t.match(entry, { actor: 'operator', key_id: 'operator', partner_id: other.id }, 'the partner sees what the operator did to its database');
  t.equal((await api.request('GET', '/v1/databases/db-no-such-000000', { key: ADMIN_KEY })).status, 404);
  const usage = await api.request('GET', '/v1/usage/partners', { key: ADMIN_KEY });
  t.same(usage.body.partners.map((p: any) => p.name).sort(), ['acme', 'other']);
  t.equal((await api.request('GET', '/v1/usage/partners', { key: acme.key })).status, 403);
  t.match((await api.request('GET', '/v1/whoami', { key: acme.key })).body, { kind: 'partner', partner_id: acme.id, partner_name: 'acme', key_id: /^key-/ });
  t.match((await api.request('GET', '/v1/whoami', { key: ADMIN_KEY })).body, { kind: 'operator', key_id: 'operator', partner_id: null });
});

t.test('node events are the operator’s, each recorded once', async (t) => {
  const { events } = api.gateway.core;
  t.equal(await recordNodeLost(events, { id: 'node-b', generation: 3, silentSeconds: 31.4, databases: ['db-x'] }), true);
  t.equal(await recordNodeLost(events, { id: 'node-b', generation: 3, silentSeconds: 40, databases: ['db-x'] }), false, 'another gateway seeing the same loss records nothing');
  await recordNodeDrained(events, { id: 'node-b', startedAt: new Date(), moved: 4, left: 0 });
  const seen = await api.request('GET', '/v1/events?type=node.*', { key: ADMIN_KEY });
  t.match(seen.body.events, [{ type: 'node.lost', partner_id: null, data: { node_id: 'node-b', silent_seconds: 31, databases: ['db-x'] } }, { type: 'node.drained', data: { databases_moved: 4 } }]);
  t.same((await api.request('GET', '/v1/events?type=node.*', { key: acme.key })).body.events, [], 'partners never see them');
});

t.test('events recorded after their change: a burst shares statements, keeps its order, and a bad event costs only itself', async (t) => {
  const { events } = api.gateway.core;
  const burst = (label: string, n: number) => Array.from({ length: n }, (_, i) => `db-${label}-${i}`);
  const recorded = async (label: string) =>
    (await catalog.query(`SELECT database_id FROM events WHERE database_id LIKE $1 ORDER BY txid, seq`, [`db-${label}-%`])).rows.map((r) => r.database_id);
  const record = (id: string, n: string) => events.recordAfter({ type: 'database.updated', partnerId: acme.id, databaseId: id, data: { n } });

  const ids = burst('burst', 40);
  await Promise.all(ids.map((id) => record(id, id)));
  t.same(await recorded('burst'), ids, 'every event, in the order recorded');
  const { rows } = await catalog.query(`SELECT count(DISTINCT txid)::int AS n FROM events WHERE database_id LIKE 'db-burst-%'`);
  t.ok(rows[0].n <= 3, `40 events took ${rows[0].n} transactions, not one each`);

  const mixed = burst('mixed', 10);
  await Promise.all([
    ...mixed.slice(0, 5).map((id) => record(id, id)),
    // Postgres's jsonb holds no NUL character: this one event fails, and the promise of it still settles.
    record('db-mixed-bad', 'a\u0000b'),
    ...mixed.slice(5).map((id) => record(id, id)),
  ]);
  t.same(await recorded('mixed'), mixed, 'the events sent with a bad one are recorded, in order; the bad one is not');
});

t.test('entries older than PGFLEET_AUDIT_RETENTION are purged', async (t) => {
  t.equal(loadConfig({ PGFLEET_AUDIT_RETENTION: '86400' }).events.auditRetentionSeconds, 86400);
  t.equal(loadConfig({}).events.auditRetentionSeconds, 90 * 86400, '90 days by default');
  t.throws(() => loadConfig({ PGFLEET_AUDIT_RETENTION: '60' }), ConfigError, 'at least an hour');
  await catalog.query(`UPDATE audit_log SET at = now() - interval '2 days' WHERE action = 'createWebhook'`);
  const before = (await audit('limit=1000')).length;
  t.ok(await api.gateway.core.audit.purge(86400) >= 1);
  t.same(await audit('action=createWebhook'), []);
  t.equal((await audit('limit=1000')).length, before - 2);
});
