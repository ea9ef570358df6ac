// The outbox survives a kill -9: a delivery cut off mid-flight and the events queued behind it are
// sent after the restart, in order, with the same webhook-ids (one effect each at the receiver).
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ADMIN_KEY } from './api-client.ts';
import { SPAWNED_GATEWAY_ENV, repoRoot, seededDataDir, until } from './helpers.ts';
import { startReceiver } from './webhook-receiver.ts';

const dataDir = seededDataDir();
t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));

/** `pgfleet start` on the data dir; its API URL once ready. */
async function start(): Promise<{ child: ChildProcess; api: string }> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'pgfleet.js'), 'start'], {
    env: {
      ...process.env, ...SPAWNED_GATEWAY_ENV, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_FORMAT: 'json', PGFLEET_ADMIN_KEY: ADMIN_KEY,
      PGFLEET_WEBHOOK_ALLOW_INTERNAL: 'true', PGFLEET_WEBHOOK_TIMEOUT: '60',
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const api = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const ready = buf.split('\n').map((l) => (l.startsWith('{') ? JSON.parse(l) : {})).find((l) => l.msg === 'pgfleet is ready');
      if (ready) resolve(ready.api);
    });
    child.once('exit', (code) => reject(new Error(`pgfleet exited early with ${code}`)));
  });
  return { child, api };
}

t.test('kill -9 of the gateway mid-delivery: after the restart every event arrives, in order, once', async (t) => {
  let secret: string | undefined;
  const receiver = await startReceiver(() => secret);
  t.teardown(() => receiver.close());
  let first = true;
  // The first delivery is never answered: the gateway is killed while it waits.
  receiver.answer = () => (first ? ((first = false), { hang: true }) : {});
  let gw = await start();
  t.teardown(() => gw.child.kill('SIGKILL'));
  const call = async (method: string, p: string, key: string, body?: unknown) => {
    const res = await fetch(`${gw.api}${p}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
    return res.json() as Promise<any>;
  };
  const partner = await call('POST', '/v1/partners', ADMIN_KEY, { name: 'acme' });
  const hook = await call('POST', '/v1/webhooks', partner.api_key, { url: receiver.url, events: ['*'] });
  secret = hook.secret;
  const db = await call('POST', '/v1/databases', partner.api_key, { user_id: 'alice' });
  await call('POST', `/v1/databases/${db.id}/roles`, partner.api_key, { name: 'reader' });
  await until('the first delivery in flight', () => receiver.received.length === 1);
  await new Promise((resolve) => {
    gw.child.once('exit', resolve);
    gw.child.kill('SIGKILL');
  });
  t.equal(receiver.received.length, 1, 'nothing after it was sent: its line waits for it');

  gw = await start();
  await until('every event', () => receiver.applied.size === 3, 60_000);
  const types = [...receiver.applied.values()].map((r) => r.type);
  t.same(types, ['database.created', 'database.ready', 'role.created'], 'in order');
  t.equal(receiver.received[0]!.id, receiver.received[1]!.id, 'the cut-off delivery again, under the same webhook-id');
  t.ok(receiver.received.every((r) => r.verified));
  const deliveries = await call('GET', `/v1/webhooks/${hook.id}/deliveries`, partner.api_key);
  const created = deliveries.deliveries.find((d: any) => d.event_type === 'database.created');
  const detail = await call('GET', `/v1/webhooks/${hook.id}/deliveries/${created.id}`, partner.api_key);
  t.match(detail.attempt_log, [{ attempt: 1, status: null, error: 'the gateway stopped during this attempt' }, { attempt: 2, status: 200 }]);
  t.equal(detail.state, 'delivered');
});
