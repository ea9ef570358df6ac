// Usage pushed to billing: hourly usage.recorded events through the webhook outbox, each with its
// idempotency key; a late change to an hour becomes one more record with the difference, so the
// records of a database add up to its usage exactly. And quota.warning / quota.exceeded, once each.
import t from 'tap';
import { startApi } from './api-client.ts';
import { until } from './helpers.ts';
import { reportUsage, usageDelta } from '../src/metering/usage-reports.ts';
import { HOUR_MS, hourOf } from '../src/metering/hours.ts';
import { quotaLevels } from '../src/metering/quota-events.ts';
import { startReceiver } from './webhook-receiver.ts';

t.test('usageDelta: the first record carries everything, later ones what changed; storage once', async (t) => {
  t.same(usageDelta({ compute_seconds: 2, storage_byte_hours: 100 }, undefined), { compute_seconds: 2, storage_byte_hours: 100 });
  t.same(usageDelta({ compute_seconds: 5, connections: 2 }, { compute_seconds: 2, connections: 2, storage_byte_hours: 100 }), { compute_seconds: 3, connections: 0 });
  t.equal(usageDelta({ compute_seconds: 2 }, { compute_seconds: 2 }), undefined, 'nothing new: no record');
});

t.test('quotaLevels: 80% warns, 100% is exceeded; unlimited and max_connections never', async (t) => {
  const standing = { monthToDate: { compute_time_ms: 85_000, data_transfer_bytes: 10 }, storageBytes: 500, connections: 99 };
  t.same(quotaLevels({ compute_time_seconds: 100, data_transfer_bytes: 10, storage_bytes: null, max_connections: 1 }, standing).map((q) => [q.name, q.level, q.used]),
    [['compute_time_seconds', 'warning', 85], ['data_transfer_bytes', 'exceeded', 10]]);
  t.same(quotaLevels({ storage_bytes: 1000 }, standing), [], 'half used: nothing');
});

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('hourly usage records reach the webhook once each, with idempotency keys, and sum to the usage', async (t) => {
  const api = await startApi({ PGFLEET_USAGE_FLUSH_SECONDS: '1', PGFLEET_WEBHOOK_ALLOW_INTERNAL: 'true', PGFLEET_COMPUTE_UNITS: '0.5' });
  t.teardown(() => api.stop());
  const acme = await api.partner('acme');
  let secret: string | undefined;
  const receiver = await startReceiver(() => secret);
  t.teardown(() => receiver.close());
  const hook = await api.request('POST', '/v1/webhooks', { key: acme.key, body: { url: receiver.url, events: ['usage.recorded', 'quota.*'] } });
  secret = hook.body.secret;
  const db = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice', quotas: { compute_time_seconds: 2 } } })).body;
  const { core } = api.gateway;
  const run = async () => {
    await api.request('POST', `/v1/databases/${db.id}/wake`, { key: acme.key });
    await settle(1200);
    await api.request('POST', `/v1/databases/${db.id}/suspend`, { key: acme.key });
    await core.usage.flush();
  };
  // As if the hour were over: the report of this hour is made now (the periodic one waits for the hour to settle).
  const report = () => reportUsage(core.catalog, core.events, { now: hourOf(Date.now()) + HOUR_MS, settleMs: 0 });
  await run();
  t.equal(await report(), 1, 'one record for the hour');
  t.equal(await report(), 0, 'nothing new, nothing sent');
  await run();
  t.equal(await report(), 1, 'the hour changed: one more record with the difference');
  await until('two records delivered', () => receiver.applied.size >= 2 && [...receiver.applied.values()].filter((r) => r.type === 'usage.recorded').length === 2, 20_000);
  const records = [...receiver.applied.values()].filter((r) => r.type === 'usage.recorded').map((r) => r.data);
  t.same(records.map((r) => r.revision), [1, 2]);
  t.same(records.map((r) => r.idempotency_key), [...receiver.applied.values()].filter((r) => r.type === 'usage.recorded').map((r) => r.id), 'the idempotency key is the webhook-id');
  t.match(records[0], { database_id: db.id, partner_id: acme.id, hour_start: new Date(hourOf(Date.now())).toISOString() });
  t.ok(records[0].usage.storage_byte_hours > 0, 'storage, once, with the first record of the hour');
  t.notOk('storage_byte_hours' in records[1].usage, 'not again in a correction');
  const hourly = await api.request('GET', `/v1/databases/${db.id}/usage?granularity=hourly`, { key: acme.key });
  const metered = hourly.body.periods.at(-1).usage;
  const sum = (k: string) => records.reduce((s, r) => s + (r.usage[k] ?? 0), 0);
  t.ok(Math.abs(sum('compute_seconds') - metered.compute_time_seconds) < 0.01, `records sum to the metered compute time (${sum('compute_seconds')} = ${metered.compute_time_seconds})`);
  t.ok(Math.abs(sum('compute_unit_seconds') - metered.compute_time_seconds * 0.5) < 0.01, 'compute unit seconds = size (0.5 CU) × running time');
  t.equal(sum('connections'), metered.connections ?? 0);

  // 2.4 s of compute time against a 2 s quota: warned at 80%, then exceeded; each recorded once.
  await api.request('GET', `/v1/databases/${db.id}`, { key: acme.key });
  const quota = await until('quota events', async () => {
    const got = await api.request('GET', `/v1/events?database_id=${db.id}&type=quota.*`, { key: acme.key });
    return got.body.events.length >= 1;
  }, 20_000).then(async () => (await api.request('GET', `/v1/events?database_id=${db.id}&type=quota.*`, { key: acme.key })).body.events);
  t.ok(quota.some((e: any) => e.type === 'quota.warning' || e.type === 'quota.exceeded'), quota.map((e: any) => e.type).join());
  t.ok(quota.every((e: any) => e.data.quota === 'compute_time_seconds' && e.data.limit === 2));
  t.equal(new Set(quota.map((e: any) => e.type)).size, quota.length, 'each level once');
});
