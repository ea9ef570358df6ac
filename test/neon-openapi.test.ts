import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { NEON_OPERATIONS } from '../src/providers/neon/neon-api.ts';
import { FAKE_API_KEY, FakeNeon } from './fake-neon/fake-neon.ts';
import { NeonOpenApi } from './fake-neon/openapi.ts';
import { repoRoot } from './helpers.ts';

const openapi = new NeonOpenApi();
const documented = new Set(openapi.routes.map((r) => r.operationId));

t.test('every Neon call the provider makes is an operation of the OpenAPI document', async (t) => {
  for (const op of NEON_OPERATIONS) t.ok(documented.has(op), `${op} is in ${path.basename('public-v2-for-users.gen.yaml')}`);
});

t.test('the provider makes no Neon call outside NEON_OPERATIONS', async (t) => {
  const dir = path.join(repoRoot, 'src/providers/neon');
  const files = fs.readdirSync(dir).map((f) => path.join(dir, f));
  const called = new Set<string>();
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\.call\(\s*'([A-Za-z]+)'/g)) called.add(m[1]!);
    t.notMatch(text, /\bclient\.(?!\[operation\])[a-zA-Z]+\(/, `${path.basename(file)} calls the client only through NeonApi.call`);
  }
  t.ok(called.size > 0);
  for (const op of called) t.ok((NEON_OPERATIONS as readonly string[]).includes(op), `${op} is listed`);
  for (const op of NEON_OPERATIONS) t.ok(called.has(op), `${op} is used (the list holds nothing dead)`);
});

t.test('the fake fails loudly on requests and answers outside the document', async (t) => {
  const fake = await FakeNeon.start();
  t.teardown(() => fake.close());
  const post = (p: string, body: unknown) => fetch(`${fake.baseUrl}${p}`, {
    method: 'POST', headers: { authorization: `Bearer ${FAKE_API_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  t.equal((await post('/projects', { project: { pg_version: 9 } })).status, 400, 'a body outside the schema is refused');
  t.match(fake.violations, [/createProject request: body\/project\/pg_version must be >= 14/]);
  t.equal((await post('/projects/no_such_thing!/nothing', {})).status, 404);
  t.match(fake.violations[1], /no such path in the OpenAPI document/);
  const r = await fetch(`${fake.baseUrl}/consumption_history/projects?granularity=weekly&from=x&to=y`, { headers: { authorization: `Bearer ${FAKE_API_KEY}` } });
  t.equal(r.status, 400, 'query parameters are checked too');
  t.ok(fake.violations.some((v) => /query granularity must be equal to one of the allowed values/.test(v)));
  t.ok(fake.violations.some((v) => /query from must match format "date-time"/.test(v)));
  t.ok(openapi.checkResponse(openapi.find('GET', '/projects/p-1')!.route, 200, { project: { id: 'p-1' } }).length > 0, 'an incomplete answer does not validate');
});
