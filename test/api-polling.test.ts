// What the console relies on in the public API: ETags for polling, the name search, the operator's fleet counts, /console itself.
import t from 'tap';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { psql } from './proxy-helpers.ts';

const api = await startApi();
t.teardown(() => api.stop());
const acme = await api.partner('acme');
const other = await api.partner('other');

t.test('a GET answers 304 to the ETag it gave while nothing changed, and a new ETag once something did', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'etag-user', name: 'etag' } })).body;
  const first = await api.request('GET', `/v1/databases?user_id=etag-user`, { key: acme.key });
  const etag = first.headers.get('etag')!;
  t.ok(etag, 'an ETag');
  const same = await fetch(`${api.url}/v1/databases?user_id=etag-user`, { headers: { authorization: `Bearer ${acme.key}`, 'if-none-match': etag } });
  t.equal(same.status, 304);
  t.equal(await same.text(), '', 'no body');
  t.equal(first.body.databases[0].connections, 0, 'connections now');

  t.equal((await api.request('POST', `/v1/databases/${db.id}/wake`, { key: acme.key })).status, 200);
  const changed = await api.request('GET', `/v1/databases?user_id=etag-user`, { key: acme.key, headers: { 'if-none-match': etag } });
  t.equal(changed.status, 200, 'the state changed');
  t.equal(changed.body.databases[0].state, 'running');
  t.not(changed.headers.get('etag'), etag);

  // Another partner's key with the same ETag learns nothing: its own list differs.
  const foreign = await fetch(`${api.url}/v1/databases?user_id=etag-user`, { headers: { authorization: `Bearer ${other.key}`, 'if-none-match': changed.headers.get('etag')! } });
  t.equal(foreign.status, 200);
  t.same((await foreign.json()).databases, []);
  await api.request('POST', `/v1/databases/${db.id}/suspend`, { key: acme.key });
});

t.test('connections counts the open client sessions of a database', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'conn-user' } })).body;
  let ended = false;
  const session = psql(db.connection_uri_no_sni, 'SELECT pg_sleep(4)').finally(() => (ended = true));
  let seen = 0;
  while (!ended && seen === 0) {
    seen = (await api.request('GET', `/v1/databases/${db.id}`, { key: acme.key })).body.connections;
    if (seen === 0) await new Promise((r) => setTimeout(r, 25));
  }
  t.equal(seen, 1, 'one session open');
  await session;
  t.equal((await api.request('GET', `/v1/databases/${db.id}`, { key: acme.key })).body.connections, 0, 'none once it ended');
});

t.test('name= finds databases whose name contains the text, case-insensitively and literally', async (t) => {
  for (const name of ['Shop EU', 'shop-us', 'blog', '100% off', 'a_b']) {
    await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'search', name } });
  }
  await api.request('POST', '/v1/databases', { key: other.key, body: { user_id: 'search', name: 'other shop' } });
  const names = async (q: string) =>
    (await api.request('GET', `/v1/databases?user_id=search&name=${encodeURIComponent(q)}`, { key: acme.key })).body.databases.map((d: any) => d.name);
  t.same(await names('SHOP'), ['Shop EU', 'shop-us'], "this partner's only");
  t.same(await names('%'), ['100% off'], 'a % is a percent sign');
  t.same(await names('_'), ['a_b'], 'an _ is an underscore');
  t.same(await names('nothing'), []);
  const bad = await api.request('GET', `/v1/databases?name=`, { key: acme.key });
  t.equal(bad.status, 400);
  t.match(bad.body.error.message, /^name/);
});

t.test('GET /v1/fleet: the operator gets the counts /metrics has, as JSON; a partner is refused', async (t) => {
  const fleet = await api.request('GET', '/v1/fleet', { key: ADMIN_KEY });
  t.equal(fleet.status, 200);
  t.equal(fleet.body.partners, 2);
  t.equal(fleet.body.databases_by_partner[acme.id], 7);
  t.equal(fleet.body.databases_by_partner[other.id], 1);
  t.equal(fleet.body.databases, 8);
  t.equal(fleet.body.wakes_total.ok, 2, 'the wake and the psql wake');
  t.equal(fleet.body.connections_total.relayed, 1, 'the psql session');
  const metrics = await (await fetch(`${api.url}/metrics`)).text();
  t.match(metrics, `pgfleet_compute_wakes_total{outcome="ok"} ${fleet.body.wakes_total.ok}`, 'the same as /metrics');
  t.match(metrics, `pgfleet_computes_active ${fleet.body.computes_active}`);
  const refused = await api.request('GET', '/v1/fleet', { key: acme.key });
  t.equal(refused.status, 403);
  t.equal(refused.body.error.message, 'this route needs the operator key');
  t.equal((await api.request('GET', '/v1/fleet')).status, 401);
});

t.test('/console is served without a key, with a strict content security policy; it holds no data', async (t) => {
  const page = await fetch(`${api.url}/console`);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), 'text/html');
  t.match(page.headers.get('content-security-policy'), "script-src 'self'");
  const html = await page.text();
  t.match(html, '<script type="module" src="/console/app.js">');
  t.notMatch(html, /db-|pt-/);
  const js = await fetch(`${api.url}/console/app.js`);
  t.equal(js.status, 200);
  t.match(js.headers.get('content-type'), 'text/javascript');
  t.equal(js.headers.get('content-encoding'), 'gzip', 'gzipped for a client that accepts it');
  const body = await js.text();
  t.notMatch(body, /https?:\/\/(?!www\.w3\.org)[a-z]/i, 'nothing loaded from another origin');
  const again = await fetch(`${api.url}/console/app.js`, { headers: { 'if-none-match': js.headers.get('etag')! } });
  t.equal(again.status, 304, 'revalidated, not downloaded again');
  t.equal((await fetch(`${api.url}/console/app.css`)).status, 200);
  const plain = await fetch(`${api.url}/console/app.js`, { headers: { 'accept-encoding': 'identity' } });
  t.equal(plain.headers.get('content-encoding'), null);
  t.equal(await plain.text(), body, 'the same script uncompressed');
});
