// Events and webhooks against a real HTTP receiver: signatures, the event log with its cursor,
// retries after 500s and timeouts, order per database, a delivery given up after its schedule,
// and exactly one effect per event at a receiver that dedupes on webhook-id.
import t from 'tap';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { until } from './helpers.ts';
import { type Receiver, startReceiver } from './webhook-receiver.ts';

// Retries 0.2 s, 0.4 s and 0.4 s apart (four attempts), each cut at 1 s: the schedule is a setting.
const api = await startApi({ PGFLEET_WEBHOOK_ALLOW_INTERNAL: 'true', PGFLEET_WEBHOOK_RETRY_SCHEDULE: '0.2,0.4,0.4', PGFLEET_WEBHOOK_TIMEOUT: '1' });
t.teardown(() => api.stop());
const acme = await api.partner('acme');
const other = await api.partner('other');
let secret: string | undefined;
const receiver: Receiver = await startReceiver(() => secret);
t.teardown(() => receiver.close());
let webhookId: string;

const events = (r: Receiver, databaseId: string) => r.received.filter((x) => x.data.database_id === databaseId);

t.test('a webhook is registered with a secret shown once; bad input is a 400 naming the field', async (t) => {
  const made = await api.request('POST', '/v1/webhooks', { key: acme.key, body: { url: receiver.url, events: ['database.*', 'role.*', 'usage.recorded'] } });
  t.equal(made.status, 201, JSON.stringify(made.body));
  t.match(made.body, { url: receiver.url, events: ['database.*', 'role.*', 'usage.recorded'] });
  t.match(made.body.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  secret = made.body.secret;
  webhookId = made.body.id;
  const listed = await api.request('GET', '/v1/webhooks', { key: acme.key });
  t.same(listed.body.webhooks.map((w: any) => w.id), [webhookId]);
  t.notOk('secret' in listed.body.webhooks[0], 'the secret is not shown again');
  t.equal((await api.request('GET', `/v1/webhooks/${webhookId}`, { key: other.key })).status, 404, "another partner's webhook is not found");
  const bad = async (body: unknown, field: string) => {
    const r = await api.request('POST', '/v1/webhooks', { key: acme.key, body });
    t.equal(r.status, 400, JSON.stringify(body));
    t.match(r.body.error.message, new RegExp(`^${field}`), r.body.error.message);
  };
  await bad({ url: 'ftp://example.com/x', events: ['*'] }, 'url: must be an https: or http: URL');
  await bad({ url: 'https://user:pw@example.com/x', events: ['*'] }, 'url: must not carry credentials');
  await bad({ url: receiver.url, events: ['database.exploded'] }, 'events: "database.exploded" is not an event type');
  await bad({ url: receiver.url, events: [] }, 'events');
  await bad({ url: receiver.url, events: ['*'], secret: 'hunter2' }, 'secret: must be whsec_');
  await bad({ url: receiver.url }, 'events: is required');
});

let dbId: string;

t.test('a database made and changed: signed deliveries, in order, the same events GET /v1/events lists', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'alice' } })).body;
  dbId = db.id;
  await api.request('POST', `/v1/databases/${dbId}/roles`, { key: acme.key, body: { name: 'reader' } });
  await api.request('PATCH', `/v1/databases/${dbId}`, { key: acme.key, body: { quotas: { storage_bytes: 1e9 } } });
  await until('four deliveries', () => events(receiver, dbId).length >= 4, 20_000);
  const got = events(receiver, dbId);
  t.same(got.map((r) => r.type), ['database.created', 'database.ready', 'role.created', 'database.updated'], 'in the order they happened');
  t.ok(got.every((r) => r.verified), 'every signature verifies (HMAC-SHA256 over id.timestamp.body)');
  t.ok(got.every((r) => Math.abs(r.timestamp * 1000 - r.at) < 10_000), 'webhook-timestamp is the time of sending');
  t.match(got[0]!.body, { id: got[0]!.id, type: 'database.created', data: { database_id: dbId, partner_id: acme.id, user_id: 'alice', region: 'local' } });
  t.match(got[2]!.data, { role: 'reader' });

  const listed = await api.request('GET', `/v1/events?database_id=${dbId}`, { key: acme.key });
  t.same(listed.body.events.map((e: any) => e.id), got.map((r) => r.id), 'event ids are the webhook-ids');
  // Cursor paging: one at a time, then nothing new, and the cursor still works.
  let cursor: string | undefined;
  const paged: string[] = [];
  for (;;) {
    const page = await api.request('GET', `/v1/events?database_id=${dbId}&limit=1${cursor ? `&cursor=${cursor}` : ''}`, { key: acme.key });
    t.equal(page.status, 200);
    cursor = page.body.next_cursor;
    if (page.body.events.length === 0) break;
    paged.push(page.body.events[0].type);
  }
  t.same(paged, ['database.created', 'database.ready', 'role.created', 'database.updated']);
  await api.request('POST', `/v1/databases/${dbId}/roles/reader/reset_password`, { key: acme.key });
  const next = await api.request('GET', `/v1/events?database_id=${dbId}&cursor=${cursor}`, { key: acme.key });
  t.same(next.body.events.map((e: any) => e.type), ['role.password_reset'], 'polling with next_cursor gives what happened since');
  t.equal((await api.request('GET', '/v1/events?cursor=bm90LWEtY3Vyc29y', { key: acme.key })).status, 400, 'a made-up cursor is a 400');
  const theirs = await api.request('GET', `/v1/events?database_id=${dbId}`, { key: other.key });
  t.same(theirs.body.events, [], "another partner sees none of acme's events");
  const operator = await api.request('GET', `/v1/events?database_id=${dbId}`, { key: ADMIN_KEY });
  t.equal(operator.body.events.length, 5, 'the operator sees every partner’s');
  t.equal((await api.request('GET', '/v1/events?partner_id=x', { key: acme.key })).status, 400, 'a partner cannot name another partner');
});

t.test('500s and a timeout are retried with the same webhook-id; the effect happens once', async (t) => {
  const seen = new Map<string, number>();
  receiver.answer = (r) => {
    const n = (seen.get(r.id) ?? 0) + 1;
    seen.set(r.id, n);
    if (r.type !== 'role.created') return {};
    // 500, then an answer after the 1 s timeout (processed, but the gateway gave up), then 200.
    return n === 1 ? { status: 500 } : n === 2 ? { delayMs: 1500 } : {};
  };
  await api.request('POST', `/v1/databases/${dbId}/roles`, { key: acme.key, body: { name: 'writer' } });
  const event = await until('the event', async () =>
    (await api.request('GET', `/v1/events?database_id=${dbId}&type=role.created`, { key: acme.key })).body.events.length === 2);
  t.ok(event === undefined);
  const roleEvent = (await api.request('GET', `/v1/events?database_id=${dbId}&type=role.created`, { key: acme.key })).body.events[1];
  await until('three attempts', () => receiver.received.filter((r) => r.id === roleEvent.id).length === 3, 20_000);
  const deliveries = await api.request('GET', `/v1/webhooks/${webhookId}/deliveries?limit=1000`, { key: acme.key });
  const delivery = deliveries.body.deliveries.find((d: any) => d.event_id === roleEvent.id);
  await until('delivered', async () => (await api.request('GET', `/v1/webhooks/${webhookId}/deliveries/${delivery.id}`, { key: acme.key })).body.state === 'delivered');
  const detail = (await api.request('GET', `/v1/webhooks/${webhookId}/deliveries/${delivery.id}`, { key: acme.key })).body;
  t.equal(detail.attempts, 3);
  t.same(detail.attempt_log.map((a: any) => a.status), [500, null, 200], 'each attempt with its answer');
  t.match(detail.attempt_log[1].error, /no answer within 1 s/);
  t.ok(detail.attempt_log.every((a: any) => a.node_id === api.gateway.core.nodeId), 'and the gateway that made it');
  t.equal(receiver.applied.has(roleEvent.id), true);
  t.equal([...receiver.applied.keys()].filter((id) => id === roleEvent.id).length, 1, 'applied once though received three times');
  receiver.answer = () => ({});
});

t.test('in order per database: a failing delivery holds back the later events of its database, not of others', async (t) => {
  let failing = true;
  receiver.answer = (r) => (failing && r.data.user_id === 'held' && r.type === 'database.created' ? { status: 503 } : {});
  const a = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'held' } })).body;
  await api.request('POST', `/v1/databases/${a.id}/roles`, { key: acme.key, body: { name: 'later' } });
  const b = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'free' } })).body;
  await until("b's events", () => events(receiver, b.id).length >= 2, 20_000);
  t.ok(events(receiver, a.id).length >= 1, "a's first event was tried");
  t.same(new Set(events(receiver, a.id).map((r) => r.type)), new Set(['database.created']), 'and nothing after it');
  failing = false;
  await until("a's events", () => new Set(events(receiver, a.id).map((r) => r.type)).size === 3, 20_000);
  const firsts = [...new Map(events(receiver, a.id).map((r) => [r.id, r.type])).values()];
  t.same(firsts, ['database.created', 'database.ready', 'role.created'], 'then the rest, in order');
  receiver.answer = () => ({});
});

t.test('an endpoint that fails every attempt: the delivery fails after the schedule, and the line moves on', async (t) => {
  receiver.answer = (r) => (r.data.user_id === 'doomed' && r.type === 'database.created' ? { status: 500 } : {});
  const c = (await api.request('POST', '/v1/databases', { key: acme.key, body: { user_id: 'doomed' } })).body;
  await until('the next event of its line', () => events(receiver, c.id).some((r) => r.type === 'database.ready'), 20_000);
  t.equal(events(receiver, c.id).filter((r) => r.type === 'database.created').length, 4, 'four attempts: the first and three retries');
  const failed = await api.request('GET', `/v1/webhooks/${webhookId}/deliveries?state=failed`, { key: acme.key });
  t.match(failed.body.deliveries, [{ event_type: 'database.created', database_id: c.id, state: 'failed', attempts: 4, last_status: 500 }]);
  const failures = await api.request('GET', '/v1/failures', { key: ADMIN_KEY });
  t.ok(failures.body.webhook_failures.some((f: any) => f.delivery_id === failed.body.deliveries[0].id && f.partner_id === acme.id), "the operator's recent failures list it");
  receiver.answer = () => ({});
});

t.test('deleting a webhook drops its pending deliveries; the event types are listed', async (t) => {
  const types = await api.request('GET', '/v1/events/types', { key: acme.key });
  t.ok(types.body.types.some((x: any) => x.type === 'quota.exceeded' && !x.operator_only));
  t.ok(types.body.types.some((x: any) => x.type === 'node.lost' && x.operator_only));
  const temp = await api.request('POST', '/v1/webhooks', { key: acme.key, body: { url: 'http://127.0.0.1:9/nothing', events: ['*'] } });
  t.equal((await api.request('DELETE', `/v1/webhooks/${temp.body.id}`, { key: acme.key })).status, 204);
  t.equal((await api.request('DELETE', `/v1/webhooks/${temp.body.id}`, { key: acme.key })).status, 404);
  const { rows } = await api.gateway.core.catalog.query('SELECT count(*)::int AS n FROM webhook_deliveries WHERE webhook_id = $1', [temp.body.id]);
  t.equal(rows[0].n, 0);
});
