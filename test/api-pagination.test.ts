// 1,000 databases listed through cursor pagination: none repeated, none missing, in a stable order.
import t from 'tap';
import { type ApiHarness, pooled, startApi } from './api-client.ts';

let api: ApiHarness;
t.before(async () => {
  api = await startApi({ PGFLEET_API_RATE_LIMIT: '100000' });
});
t.teardown(() => api.stop());

async function listAll(key: string, query: string, limit: number, during?: (page: number) => Promise<void>): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const qs: string = `?limit=${limit}${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await api.request('GET', `/v1/databases${qs}`, { key });
    if (res.status !== 200) throw new Error(`list failed: ${res.status} ${JSON.stringify(res.body)}`);
    t.ok(res.body.databases.length <= limit);
    ids.push(...res.body.databases.map((d: { id: string }) => d.id));
    cursor = res.body.next_cursor;
    pages++;
    await during?.(pages - 1);
  } while (cursor);
  return { ids, pages };
}

t.test('1,000 databases through pages', async (t) => {
  const { key } = await api.partner();
  const other = await api.partner('other');
  await api.request('POST', '/v1/databases', { key: other.key, body: { user_id: 'u0' } });
  const created = await pooled(Array.from({ length: 1000 }, (_, i) => i), 8, async (i) => {
    const res = await api.request('POST', '/v1/databases', { key, body: { user_id: `u${i % 10}` } });
    if (res.status !== 201) throw new Error(`create ${i} failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as { id: string; user_id: string; created_at: string };
  });
  // The order the catalog holds (created_at has microseconds there, milliseconds in the API).
  const { rows } = await api.gateway.core.catalog.query(
    `SELECT d.id FROM databases d JOIN partners p ON p.id = d.partner_id WHERE d.user_id LIKE 'u_' AND p.name = 'acme' ORDER BY d.created_at, d.id`);
  const expected = rows.map((r) => r.id as string);

  const { ids, pages } = await listAll(key, '', 37);
  t.equal(pages, Math.ceil(1000 / 37));
  t.equal(ids.length, 1000, 'none missing');
  t.equal(new Set(ids).size, 1000, 'no duplicate');
  t.same(new Set(ids), new Set(created.map((d) => d.id)), 'exactly the partner’s databases');
  t.same(ids, expected, 'oldest first, ties by id');
  t.ok(ids.every((id, i) => i === 0 || created.find((d) => d.id === id)!.created_at >= created.find((d) => d.id === ids[i - 1])!.created_at), 'created_at never decreases');

  const exact = await listAll(key, '', 1000);
  t.same(exact.ids, expected);
  t.equal(exact.pages, 1, 'a page of exactly the limit has no next cursor');
  const byDefault = await api.request('GET', '/v1/databases', { key });
  t.equal(byDefault.body.databases.length, 100, 'the default page is 100');

  const u3 = await listAll(key, '&user_id=u3', 7);
  t.same(u3.ids, created.filter((d) => d.user_id === 'u3').map((d) => d.id).sort((a, b) => expected.indexOf(a) - expected.indexOf(b)));
  t.equal(u3.ids.length, 100);

  // Databases made and deleted while paging: the rest neither repeats nor skips.
  const added: string[] = [];
  const removed = new Set<string>();
  const changing = await listAll(key, '', 50, async (page) => {
    if (page === 3) {
      added.push((await api.request('POST', '/v1/databases', { key, body: { user_id: 'late' } })).body.id);
      const victim = expected[900]!;
      await api.request('DELETE', `/v1/databases/${victim}`, { key });
      removed.add(victim);
    }
  });
  t.equal(new Set(changing.ids).size, changing.ids.length, 'no duplicate while the list changes');
  t.same(changing.ids, [...expected.filter((id) => !removed.has(id)), ...added], 'a new one at the end, the deleted one gone, nothing skipped');
});
