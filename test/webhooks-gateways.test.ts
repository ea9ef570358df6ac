// Two gateways on one catalog deliver each event once: a delivery is claimed with a lease
// (FOR UPDATE SKIP LOCKED), and each database's events still arrive in order, whichever gateway sends them.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { type Gateway, startGateway } from '../main.ts';
import { ADMIN_KEY } from './api-client.ts';
import { startCatalog } from './fleet/topology.ts';
import { testConfig, tmpDataDir, until } from './helpers.ts';
import { startReceiver } from './webhook-receiver.ts';

const root = tmpDataDir('pgfleet-two');
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
const catalog = await startCatalog(root);
t.teardown(() => catalog.server.stop());
const env = {
  DATABASE_URL: catalog.url, PGFLEET_SECRET_KEY: 'ab'.repeat(32), PGFLEET_WEBHOOK_ALLOW_INTERNAL: 'true', PGFLEET_ADMIN_KEY: ADMIN_KEY,
};
const gateways: Gateway[] = [];
for (let i = 0; i < 2; i++) {
  const config = testConfig({ ...env, PGFLEET_DATA_DIR: path.join(root, `gw${i}`) });
  fs.mkdirSync(config.dataDir, { mode: 0o711 });
  gateways.push(await startGateway(config));
}
t.teardown(async () => {
  for (const g of gateways) await g.stop();
});

const call = async (g: Gateway, method: string, p: string, key: string, body?: unknown) => {
  const res = await fetch(`${g.apiUrl}${p}`, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  return res.json() as Promise<any>;
};

t.test('400 events made through both gateways: each delivered once, in order per database, by both', async (t) => {
  const partner = await call(gateways[0]!, 'POST', '/v1/partners', ADMIN_KEY, { name: 'acme' });
  let secret: string | undefined;
  const receiver = await startReceiver(() => secret);
  t.teardown(() => receiver.close());
  // A slow endpoint: one gateway's deliveries in flight cannot keep up alone.
  receiver.answer = () => ({ delayMs: 100 });
  secret = (await call(gateways[1]!, 'POST', '/v1/webhooks', partner.api_key, { url: receiver.url, events: ['database.*'] })).secret;
  const ids: string[] = [];
  for (let i = 0; i < 200; i++) ids.push((await call(gateways[i % 2]!, 'POST', '/v1/databases', partner.api_key, { user_id: `u${i}` })).id);
  await until('400 deliveries', () => receiver.applied.size >= 400, 60_000);
  await new Promise((r) => setTimeout(r, 500)); // time for a duplicate, were there one
  t.equal(receiver.applied.size, 400, 'every event applied');
  t.equal(receiver.received.length, 400, 'and none received twice');
  for (const id of ids) {
    const order = receiver.received.filter((r) => r.data.database_id === id).map((r) => r.type);
    if (order.join() !== 'database.created,database.ready') t.fail(`${id}: ${order.join()}`);
  }
  const { rows } = await gateways[0]!.core.catalog.query('SELECT node_id, count(*)::int AS n FROM webhook_attempts GROUP BY node_id ORDER BY node_id');
  t.equal(rows.length, 2, `both gateways delivered (${rows.map((r) => `${r.node_id}: ${r.n}`).join(', ')})`);
  t.equal(rows.reduce((s, r) => s + r.n, 0), 400, 'one attempt per delivery in all');
});
