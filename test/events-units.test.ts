// The pure parts of events, webhooks, audit and refusals, and outbound requests against real sockets.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { redact } from '../api/audit-hook.ts';
import { AuthFailed, BackendError, ConnectionRefused } from '../proxy/errors.ts';
import { refusalOf } from '../proxy/refusal-reason.ts';
import { MAX_EXPIRY_MS, parseExpiresAt } from '../src/branch-expiry.ts';
import { loadConfig } from '../src/config.ts';
import { ConfigError, QuotaError, TokenError } from '../src/errors.ts';
import { RecentFailures } from '../src/failures.ts';
import { checkOutboundUrl } from '../src/outbound-address.ts';
import { attemptDelivery } from '../src/webhooks/deliver.ts';
import { DEFAULT_RETRY_SCHEDULE_SECONDS, retryDelayMs } from '../src/webhooks/retry-schedule.ts';
import { checkSecret, generateSecret, signedHeaders } from '../src/webhooks/signing.ts';
import { verifySignature } from './webhook-receiver.ts';

t.test('the default retry schedule keeps trying for more than a day, then stops', async (t) => {
  const schedule = DEFAULT_RETRY_SCHEDULE_SECONDS.map((s) => s * 1000);
  const waits: number[] = [];
  for (let failed = 1; retryDelayMs(failed, schedule) !== undefined; failed++) waits.push(retryDelayMs(failed, schedule)!);
  t.equal(waits.length + 1, 8, 'eight attempts');
  t.ok(waits.every((w, i) => i === 0 || w >= waits[i - 1]!), 'waits never shrink');
  const span = waits.reduce((a, b) => a + b, 0);
  t.ok(span >= 86_400_000, `the last attempt is ${(span / 3_600_000).toFixed(1)} h after the first`);
  t.equal(retryDelayMs(8, schedule), undefined, 'after the eighth failure: none');
  t.throws(() => retryDelayMs(0, schedule), RangeError);
  const config = loadConfig({ PGFLEET_WEBHOOK_RETRY_SCHEDULE: '0.5, 2,10' });
  t.same(config.events.webhookRetryScheduleMs, [500, 2000, 10_000], 'PGFLEET_WEBHOOK_RETRY_SCHEDULE sets another');
  t.same(loadConfig({}).events.webhookRetryScheduleMs, schedule);
  for (const bad of ['soon', '1,,2', '-1', '999999999']) {
    t.throws(() => loadConfig({ PGFLEET_WEBHOOK_RETRY_SCHEDULE: bad }), ConfigError, bad);
  }
});

t.test('signatures verify as the Standard Webhooks specification computes them', async (t) => {
  const secret = generateSecret();
  t.equal(checkSecret(secret), secret);
  const body = '{"id":"evt_1","type":"database.created"}';
  const h = signedHeaders(secret, 'evt_1', new Date(1_700_000_000_000), body);
  t.equal(h['webhook-timestamp'], '1700000000');
  t.ok(verifySignature(secret, 'evt_1', '1700000000', body, h['webhook-signature']!), 'HMAC-SHA256 of id.timestamp.body');
  t.notOk(verifySignature(secret, 'evt_1', '1700000000', `${body} `, h['webhook-signature']!), 'a changed body does not verify');
  t.notOk(verifySignature(generateSecret(), 'evt_1', '1700000000', body, h['webhook-signature']!), 'another secret does not');
  for (const bad of ['hunter2', 'whsec_', `whsec_${Buffer.alloc(8).toString('base64')}`, `whsec_${Buffer.alloc(65).toString('base64')}`]) {
    t.throws(() => checkSecret(bad), { httpStatus: 400, message: /^secret:/ }, bad);
  }
});

t.test('webhook URLs: https only and no internal address, unless allowed; at delivery too', async (t) => {
  const strict = { allowHttp: false, allowInternal: false };
  t.equal(checkOutboundUrl('url', 'https://hooks.example.com/pgfleet', strict), 'https://hooks.example.com/pgfleet');
  for (const [raw, message] of [
    ['http://hooks.example.com/x', /^url: must be an https: URL/], ['https://127.0.0.1/x', /^url: must not name a loopback/],
    ['https://[::1]/x', /loopback/], ['https://localhost/x', /loopback/], ['https://10.1.2.3/x', /private/], ['https://169.254.169.254/x', /link-local/],
    ['https://a:b@example.com/', /credentials/], ['not a url', /^url: not a valid URL/],
  ] as const) t.throws(() => checkOutboundUrl('url', raw, strict), { httpStatus: 400, message }, raw);
  t.ok(checkOutboundUrl('url', 'http://127.0.0.1:9/x', { allowHttp: true, allowInternal: true }));

  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => server.close(r)));
  const port = (server.address() as AddressInfo).port;
  const send = (url: string, allowInternal: boolean) => attemptDelivery(
    { url, secret: generateSecret(), eventId: 'evt_x', type: 'database.created', createdAt: new Date(), data: {} },
    { timeoutMs: 2000, allowInternal, signal: new AbortController().signal, userAgent: 'test' });
  t.match(await send(`http://127.0.0.1:${port}/`, true), { ok: true, status: 200 });
  t.match(await send(`http://127.0.0.1:${port}/`, false), { ok: false, error: /127\.0\.0\.1 is an internal address.*PGFLEET_WEBHOOK_ALLOW_INTERNAL/ });
  t.match(await send(`http://localhost:${port}/`, false), { ok: false, error: /localhost resolves to .*, an internal address/ }, 'a name is judged by what it resolves to');
});

t.test('audit entries keep the body without its secrets', async (t) => {
  t.same(redact({ url: 'https://x', secret: 'whsec_abc', nested: { password: 'pw', keep: 1 }, list: [{ token: 't' }] }),
    { url: 'https://x', secret: '[redacted]', nested: { password: '[redacted]', keep: 1 }, list: [{ token: '[redacted]' }] });
  t.match(redact({ name: 'x'.repeat(10_000) }), { truncated: true, members: ['name'] });
});

t.test('refusals in words an operator can act on', async (t) => {
  t.match(refusalOf(new AuthFailed('bob', 'unknown_role'), 'ep-a-b-000001'), { code: 'unknown_role', why: /role "bob" does not exist on endpoint ep-a-b-000001/ });
  t.match(refusalOf(new AuthFailed('bob', 'wrong_password'), undefined), { code: 'wrong_password', why: /wrong password for role "bob"; .*reset_password/ });
  t.match(refusalOf(new TokenError('token expired', 'exp 12:00 is past'), 'ep-x'), { code: 'token_expired', why: /token expired.*exp 12:00 is past/ });
  t.match(refusalOf(new TokenError('wrong audience', 'aud x'), 'ep-x'), { code: 'token_foreign' });
  t.match(refusalOf(new TokenError('malformed token', 'bad'), 'ep-x'), { code: 'token_invalid' });
  t.match(refusalOf(new ConnectionRefused('endpoint "ep-q" does not exist', '3D000'), 'ep-q'), { code: 'unknown_endpoint', why: /typo/ });
  t.match(refusalOf(new ConnectionRefused('too many failed authentication attempts from this address', '28000'), undefined), { code: 'too_many_failures' });
  t.match(refusalOf(new QuotaError('quota exceeded: storage_bytes', '53400'), 'ep-x'), { code: 'quota' });
  t.match(refusalOf(new QuotaError('quota exceeded: max_connections', '53300'), 'ep-x'), { code: 'max_connections' });
  t.match(refusalOf(new BackendError('database "x" does not exist', '3D000', 'FATAL'), 'ep-x'), { code: 'backend_error', why: /3D000 database "x" does not exist/ });
  t.equal(refusalOf(new Error('client left'), 'ep-x'), undefined, 'not a refusal');
});

t.test('recent refused logins: counts by reason over the last hour, newest first', async (t) => {
  const f = new RecentFailures();
  const now = Date.now();
  f.loginRefused({ reason: 'wrong_password', why: 'old' }, now - 2 * 3_600_000);
  f.loginRefused({ reason: 'wrong_password', why: 'a' }, now - 60_000);
  f.loginRefused({ reason: 'unknown_role', why: 'b' }, now);
  const r = f.refusedLogins(now);
  t.same(r.byReason, { wrong_password: 1, unknown_role: 1 }, 'the two-hour-old one no longer counts');
  t.same(r.recent.map((x) => x.why), ['b', 'a', 'old']);
});

t.test('expires_at: an RFC 3339 time in the future, at most 30 days ahead', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.same(parseExpiresAt('2026-01-02T00:00:00Z', now), new Date('2026-01-02T00:00:00Z'));
  t.equal(parseExpiresAt('2026-01-01T03:00:00+02:00', now).toISOString(), '2026-01-01T01:00:00.000Z', 'an offset counts');
  for (const [text, message] of [['tomorrow', /not an RFC 3339 time/], ['2025-12-31T23:59:59Z', /is not in the future/],
    [new Date(now + MAX_EXPIRY_MS + 1000).toISOString(), /at most 30 days ahead/]] as const) {
    t.throws(() => parseExpiresAt(text, now), { httpStatus: 400, message: new RegExp(`^expires_at: .*${message.source}`) }, text);
  }
});
