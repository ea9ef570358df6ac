// Ephemeral branches: expires_at on create (and by PATCH); at that time the branch and its compute go,
// and branch.expired is recorded.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startApi } from './api-client.ts';
import { postmastersUnder, until } from './helpers.ts';
import { psql } from './proxy-helpers.ts';

const api = await startApi();
t.teardown(() => api.stop());
const acme = await api.partner('acme');
const db = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'ci' } })).body;
const branches = `/v1/databases/${db.id}/branches`;

t.test('expires_at is checked, shown, changed and cleared', async (t) => {
  const at = new Date(Date.now() + 3_600_000).toISOString();
  const made = await api.request('POST', branches, { key: acme.key, body: { name: 'preview', expires_at: at } });
  t.equal(made.status, 201);
  t.equal(made.body.expires_at, at);
  t.equal((await api.request('GET', `${branches}/preview`, { key: acme.key })).body.expires_at, at);
  t.same((await api.request('GET', branches, { key: acme.key })).body.branches.map((b: any) => [b.name, b.expires_at]), [['main', null], ['preview', at]]);
  const cleared = await api.request('PATCH', `${branches}/preview`, { key: acme.key, body: { expires_at: null } });
  t.equal(cleared.body.expires_at, null, 'null: the branch stays');
  for (const [body, message] of [
    [{ name: 'x', expires_at: '2000-01-01T00:00:00Z' }, /^expires_at: .* is not in the future/],
    [{ name: 'x', expires_at: 'in an hour' }, /^expires_at: not an RFC 3339 time/],
    [{ name: 'x', expires_at: new Date(Date.now() + 40 * 86_400_000).toISOString() }, /^expires_at: at most 30 days ahead/],
  ] as const) {
    const r = await api.request('POST', branches, { key: acme.key, body });
    t.equal(r.status, 400);
    t.match(r.body.error.message, message);
  }
  const main = await api.request('PATCH', `${branches}/main`, { key: acme.key, body: { expires_at: at } });
  t.equal(main.status, 400);
  t.match(main.body.error.message, /^expires_at: branch "main" is the database's root branch/);
  t.equal((await api.request('PATCH', `${branches}/preview`, { key: acme.key, body: {} })).status, 400, 'an empty change is a 400');
});

t.test('at its expires_at the branch and its running compute go, with branch.expired', async (t) => {
  // The gateway's first compute start makes the compute template (seconds): done before the clock starts.
  t.equal(await psql(db.connection_uri_no_sni, 'SELECT 1'), '1');
  const made = await api.request('POST', branches, { key: acme.key, body: { name: 'ci-run-7', expires_at: new Date(Date.now() + 8000).toISOString() } });
  t.equal(made.status, 201);
  t.equal(await psql(made.body.connection_uri_no_sni.replace('app_owner@', `app_owner:${encodeURIComponent(db.password)}@`), 'SELECT 1'), '1', 'its compute runs');
  const branchDir = path.join(api.gateway.core.config.dataDir, 'data', 'local', db.id, made.body.id);
  t.equal(postmastersUnder(branchDir).length, 1);
  const expired = async () => (await api.request('GET', `/v1/events?database_id=${db.id}&type=branch.*`, { key: acme.key })).body.events;
  await until('branch.expired', async () => (await expired()).some((e: any) => e.type === 'branch.expired'), 30_000);
  t.equal((await api.request('GET', `${branches}/ci-run-7`, { key: acme.key })).status, 404, 'the branch is gone');
  t.same(postmastersUnder(branchDir), [], 'its compute stopped');
  t.notOk(fs.existsSync(branchDir), 'its files are removed');
  const events = { body: { events: await expired() } };
  t.match(events.body.events.map((e: any) => [e.type, e.data.name]), [['branch.created', 'preview'], ['branch.created', 'ci-run-7'], ['branch.expired', 'ci-run-7']]);
  t.equal((await api.request('GET', `${branches}/preview`, { key: acme.key })).status, 200, 'a branch without expiry stays');
});
