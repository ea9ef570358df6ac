// Partner templates: a point-in-time copy of a database (schema, data, extensions, roles and
// grants), new databases made from it with new passwords and nothing run at create, and migrations
// that reach a template and the databases made from it.
import t from 'tap';
import { type ApiHarness, startApi } from './api-client.ts';
import { until } from './helpers.ts';
import { jobIn, owner, sqlstateOf } from './migration-helpers.ts';

let api: ApiHarness;
let key: string;
t.before(async () => {
  api = await startApi();
  key = (await api.partner()).key;
});
t.teardown(() => api?.stop());

const req = (method: string, path: string, body?: unknown) => api.request(method, path, { key, body });
const to = () => ({ port: api.gateway.proxyPort, caPath: api.gateway.caPath! });

t.test('a template of a database, databases made from it, and a migration through both', async (t) => {
  const source = (await req('POST', '/v1/databases', { user_id: 'maker', role_name: 'shop_owner', database_name: 'shop' })).body;
  const reader = (await req('POST', `/v1/databases/${source.id}/roles`, { name: 'reader' })).body;
  t.ok(reader.password);
  await owner(to(), source, async (c) => {
    await c.query(`CREATE EXTENSION citext;
      CREATE TABLE items (id int PRIMARY KEY, name citext);
      INSERT INTO items VALUES (1, 'Apple'), (2, 'Pear'), (3, 'Plum');
      CREATE ROLE app_readonly NOLOGIN; GRANT SELECT ON items TO app_readonly;`);
  });
  const made = await req('POST', '/v1/templates', { database_id: source.id, name: 'shop-v1' });
  t.equal(made.status, 201, JSON.stringify(made.body));
  const tpl = made.body;
  t.match(tpl, { name: 'shop-v1', source_database_id: source.id, source_branch: 'main', role: 'shop_owner', database: 'shop', pg_version: source.pg_version });
  t.same(tpl.roles.sort(), ['reader', 'shop_owner']);
  t.equal((await req('POST', '/v1/templates', { database_id: source.id, name: 'shop-v1' })).status, 409, 'names are unique');
  // The template is of that moment: later writes to the source are not in it.
  await owner(to(), source, (c) => c.query(`INSERT INTO items VALUES (4, 'Later')`));
  t.same((await req('GET', '/v1/templates')).body.templates.map((x: any) => x.id), [tpl.id]);
  t.notOk((await req('GET', '/v1/databases')).body.databases.some((d: any) => d.user_id.startsWith('template:')), 'a template is not listed as a database');

  for (const [body, code, message] of [
    [{ pg_version: source.pg_version === 17 ? 16 : 17 }, 'template_mismatch', /^pg_version:/],
    [{ region: 'elsewhere' }, 'template_mismatch', /^region:/],
    [{ role_name: 'someone' }, 'template_mismatch', /^role_name:/],
    [{ database_name: 'other' }, 'template_mismatch', /^database_name:/],
  ] as const) {
    const res = await req('POST', '/v1/databases', { user_id: 'x', template: tpl.id, ...body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.match(res.body.error, { code, message });
  }
  t.match((await req('POST', '/v1/databases', { user_id: 'x', template: 'tpl-none' })).body.error, { code: 'bad_request', message: /^template: no template/ });

  const copy = (await req('POST', '/v1/databases', { user_id: 'alice', template: tpl.id, labels: { plan: 'pro' } })).body;
  t.match(copy, { role: 'shop_owner', database: 'shop', template: tpl.id, state: 'suspended', pg_version: source.pg_version });
  t.same(copy.roles.sort(), ['reader', 'shop_owner']);
  t.not(copy.password, source.password);
  await owner(to(), copy, async (c) => {
    t.same((await c.query('SELECT id, name::text FROM items ORDER BY id')).rows.map((r) => r.name), ['Apple', 'Pear', 'Plum'], "the template's data, as it was");
    t.equal((await c.query(`SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'citext'`)).rows[0].n, 1, 'its extensions');
    t.equal((await c.query(`SELECT has_table_privilege('app_readonly', 'items', 'SELECT') AS ok`)).rows[0].ok, true, 'its roles and grants');
    t.equal((await c.query(`SELECT 'APPLE'::citext = 'apple' AS ok`)).rows[0].ok, true);
    t.same((await c.query('SELECT name FROM pgfleet.migrations')).rows, []);
  });
  t.equal(await sqlstateOf(owner(to(), { ...copy, password: source.password }, async () => {})), '28P01', "the source's password does not open the copy");
  // Its stop takes a base backup of its own (chunks of the template's are sealed with the template's key).
  await req('POST', `/v1/databases/${copy.id}/suspend`);
  await until('the copy\'s own base backup', async () => (await api.gateway.core.catalog.query(
    `SELECT 1 FROM base_backups bb JOIN histories h ON h.id = bb.history_id WHERE h.database_id = $1 AND bb.kind = 'copy'`, [copy.id])).rowCount! > 0, 60_000);

  // One migration reaches the template and the databases made from it.
  const job = await jobIn(async (id) => (await req('GET', `/v1/migrations/${id}`)).body,
    (await req('POST', '/v1/migrations', { name: '002_price', sql: 'ALTER TABLE items ADD COLUMN price int DEFAULT 0', selector: { template: tpl.id, templates: true } })).body.id,
    ['finished', 'failed']);
  t.match(job, { state: 'finished', counts: { total: 2, applied: 2 } });
  // A database made after it has the column and the record of the migration.
  const later = (await req('POST', '/v1/databases', { user_id: 'bob', template: tpl.id })).body;
  await owner(to(), later, async (c) => {
    t.equal((await c.query('SELECT sum(price)::int AS p, count(*)::int AS n FROM items')).rows[0].n, 3);
    t.same((await c.query('SELECT name, job_id FROM pgfleet.migrations')).rows, [{ name: '002_price', job_id: job.id }]);
  });
  const again = await jobIn(async (id) => (await req('GET', `/v1/migrations/${id}`)).body,
    (await req('POST', '/v1/migrations', { name: '002_price', sql: 'ALTER TABLE items ADD COLUMN price int', selector: { template: tpl.id } })).body.id, ['finished']);
  t.match(again.counts, { total: 2, skipped: 2 }, 'the copies have its record: skipped');

  // A template a database never started from is still needed.
  const unstarted = (await req('POST', '/v1/databases', { user_id: 'carol', template: tpl.id })).body;
  t.equal((await req('DELETE', `/v1/templates/${tpl.id}`)).status, 409);
  await req('DELETE', `/v1/databases/${unstarted.id}`);
  t.equal((await req('DELETE', `/v1/templates/${tpl.id}`)).status, 204);
  await owner(to(), later, async (c) => t.equal((await c.query('SELECT count(*)::int AS n FROM items')).rows[0].n, 3, 'copies outlive their template'));
});
