import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import t from 'tap';
import { ADMIN_KEY, startApi } from './api-client.ts';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('the consumption API and /metrics/usage report the same usage, per partner', async (t) => {
  const api = await startApi({ PGFLEET_USAGE_FLUSH_SECONDS: '1' });
  t.teardown(() => api.stop());
  const acme = await api.partner('acme');
  const other = await api.partner('other');
  const created = await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice' } });
  t.equal(created.status, 201);
  const id = created.body.id as string;

  t.equal((await api.request('POST', `/v1/databases/${id}/wake`, { key: acme.key })).status, 200);
  await settle(1200);
  t.equal((await api.request('POST', `/v1/databases/${id}/suspend`, { key: acme.key })).status, 200);

  const hourly = await api.request('GET', `/v1/databases/${id}/usage?granularity=hourly`, { key: acme.key });
  t.equal(hourly.status, 200);
  const computeSeconds = hourly.body.periods.reduce((s: number, p: any) => s + (p.usage.compute_time_seconds ?? 0), 0);
  t.ok(computeSeconds >= 1.2, `compute time is reported in seconds (${computeSeconds})`);
  t.ok(hourly.body.periods.every((p: any) => p.period_start.endsWith(':00:00.000Z')), 'hourly periods start on the hour');
  const monthly = await api.request('GET', `/v1/databases/${id}/usage?granularity=monthly&from=2000-01-01T00:00:00Z`, { key: acme.key });
  t.equal(monthly.body.periods.length, 1);
  t.equal(monthly.body.periods[0].usage.compute_time_seconds, computeSeconds, 'monthly sums the hours');

  const fleet = await api.request('GET', '/v1/usage?from=2000-01-01T00:00:00Z', { key: acme.key });
  t.same(fleet.body.databases.map((d: any) => d.database_id), [id]);
  t.equal(fleet.body.databases[0].usage.compute_time_seconds, computeSeconds);
  t.same((await api.request('GET', '/v1/usage', { key: other.key })).body.databases, [], "another partner sees none of it");
  t.equal((await api.request('GET', `/v1/databases/${id}/usage`, { key: other.key })).status, 404);

  for (const query of ['from=yesterday', 'granularity=weekly', 'from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z', 'granularity=hourly&from=2000-01-01T00:00:00Z']) {
    const res = await api.request('GET', `/v1/databases/${id}/usage?${query}`, { key: acme.key });
    t.equal(res.status, 400, `${query} → 400`);
    t.match(res.body.error.message, /^(from|to|granularity|querystring)/, 'names the field');
  }

  const metrics = await fetch(`${api.url}/metrics/usage`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  t.equal(metrics.status, 200);
  const families = parsePrometheusTextFormat(await metrics.text());
  const compute = families.find((f) => f.name === 'pgfleet_usage_compute_time_seconds_total')!;
  t.equal(compute.type, 'COUNTER');
  t.same(compute.metrics.map((m) => m.labels), [{ partner_id: acme.id, database_id: id }], 'only databases with usage');
  t.equal(Number(compute.metrics[0].value), computeSeconds, 'matches the consumption API');
  t.equal((await fetch(`${api.url}/metrics/usage`, { headers: { authorization: `Bearer ${acme.key}` } })).status, 403, 'partners cannot read it');

  const operator = parsePrometheusTextFormat(await (await fetch(`${api.url}/metrics`)).text());
  const wakes = operator.find((f) => f.name === 'pgfleet_compute_wakes_total')!;
  t.same(wakes.metrics.map((m) => [m.labels?.outcome, Number(m.value)]), [['ok', 1]], 'one wake counted');
  t.ok(operator.find((f) => f.name === 'pgfleet_api_request_duration_seconds'), 'API latency is there');
  t.notOk(operator.some((f) => f.metrics.some((m) => m.labels?.database_id)), 'no per-database labels on /metrics');
});
