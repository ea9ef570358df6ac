/**
 * Events through the outbox: 1,000 databases change state (PATCH, so database.updated each) while
 * a webhook receiver in another process times every delivery. First the outbox alone: `rounds`
 * changes per database are made while the receiver holds its answers, then the backlog drains
 * (events per second); then every database changes once more at the API's pace with the receiver
 * open (latency under load), then changes at 50/s (latency at rest). Beside a bare HTTP POST loop
 * to the same receiver (same body size, the dispatcher's 64 at a time) and one bare POST's latency,
 * in the same run. Goal: p99 ≤ 1 s.
 * Run: node --import ./bin/load-ts.mjs bench/events.ts [databases=1000] [rounds=3] [paced=300]
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGateway } from '../main.ts';
import { loadConfig } from '../src/config.ts';
import type { ClientResult, ClientSpec } from './events-client.ts';
import type { PostLoopSpec } from './post-loop.ts';
import { percentile } from './stats.ts';

const databases = Number(process.argv[2] ?? 1000);
const rounds = Number(process.argv[3] ?? 3);
const paced = Number(process.argv[4] ?? 300);
const ADMIN_KEY = 'bench-admin-key-0123456789';
/** Deliveries a gateway has in flight at once (src/webhooks/dispatcher.ts); the baseline sends as many. */
const DISPATCH_CONCURRENCY = 64;

/** Bare POSTs from a process of their own (bench/post-loop.ts). */
function load(spec: PostLoopSpec): Promise<{ samples: number[]; seconds: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./post-loop.ts', import.meta.url)), { execArgv: ['--import', fileURLToPath(new URL('../bin/load-ts.mjs', import.meta.url))] });
    child.once('message', (m) => resolve(m as { samples: number[]; seconds: number }));
    child.once('error', reject);
    child.once('exit', (code) => code && reject(new Error(`the load client exited with ${code}`)));
    child.send(spec);
  });
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-events-'));
fs.chmodSync(dataDir, 0o711);
const gateway = await startGateway(loadConfig({
  PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: ADMIN_KEY,
  // Held answers must not time out while the backlog is made.
  PGFLEET_WEBHOOK_ALLOW_INTERNAL: 'true', PGFLEET_API_RATE_LIMIT: '10000000', PGFLEET_WEBHOOK_TIMEOUT: '300',
}));
try {
  const call = async (key: string, method: string, p: string, body: unknown) => {
    const res = await fetch(`${gateway.apiUrl}${p}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return res.json() as Promise<any>;
  };
  const partner = await call(ADMIN_KEY, 'POST', '/v1/partners', { name: 'bench' });
  const ids: string[] = [];
  for (let i = 0; i < databases; i += 8) {
    const batch = await Promise.all(Array.from({ length: Math.min(8, databases - i) }, (_, j) => call(partner.api_key, 'POST', '/v1/databases', { user_id: `u${i + j}` })));
    ids.push(...batch.map((d) => d.id));
  }
  console.log(`${ids.length} databases; a backlog of ${rounds} changes each, then one more each under load (16 API clients), then ${paced} changes at 50/s`);

  const spec: ClientSpec = { apiUrl: gateway.apiUrl, key: partner.api_key, ids, rounds, concurrency: 16, paced, pacedPerSecond: 50 };
  const client = fork(fileURLToPath(new URL('./events-client.ts', import.meta.url)), { execArgv: ['--import', fileURLToPath(new URL('../bin/load-ts.mjs', import.meta.url))] });
  const result = await new Promise<ClientResult>((resolve, reject) => {
    client.once('message', (m) => resolve(m as ClientResult));
    client.once('exit', (code) => code && reject(new Error(`the client exited with ${code}`)));
    client.send(spec);
  });
  // The baseline: bare POSTs of a delivery's size from a process of their own, to the same receiver.
  const body = { id: 'evt_0123456789abcdef01234567', type: 'database.updated', timestamp: new Date().toISOString(), data: { partner_id: partner.id, database_id: ids[0], user_id: 'u0', name: null, changes: { name: 'q0-0' } } };
  let baseline: { posts: number; seconds: number; latencies: number[] } | { error: string };
  try {
    const burst = await load({ url: result.url, body: JSON.stringify(body), count: rounds * ids.length, concurrency: DISPATCH_CONCURRENCY });
    const one = await load({ url: result.url, body: JSON.stringify(body), count: paced, concurrency: 1 });
    baseline = { posts: burst.samples.length, seconds: burst.seconds, latencies: one.samples };
  } catch (err) {
    baseline = { error: (err as Error).message };
  }
  client.send('exit');

  const ms = (xs: number[], p: number) => percentile(xs, p).toFixed(1).padStart(8);
  const q = result.backlog;
  const t = result.throughput;
  const eventsPerSecond = q.changes / q.drainSeconds;
  console.log(`\nbacklog: ${q.changes} changes made by the API in ${q.changeSeconds.toFixed(1)} s (${(q.changes / q.changeSeconds).toFixed(0)}/s) while the receiver held its answers`);
  console.log(`  events delivered per second through the outbox: ${eventsPerSecond.toFixed(0)} (the backlog drained in ${q.drainSeconds.toFixed(2)} s)`);
  console.log(`under load: ${t.changes} changes in ${t.changeSeconds.toFixed(1)} s, every event delivered ${t.deliveredSeconds.toFixed(2)} s after the first change`);
  console.log(`\nlatency, change requested to delivery received    p50 ms   p99 ms   max ms`);
  console.log(`  under load (${t.changes} changes)`.padEnd(49) + `${ms(t.latencies, 50)} ${ms(t.latencies, 99)} ${ms(t.latencies, 100)}`);
  console.log(`  at 50 changes/s (${result.paced.latencies.length})`.padEnd(49) + `${ms(result.paced.latencies, 50)} ${ms(result.paced.latencies, 99)} ${ms(result.paced.latencies, 100)}`);
  console.log(`  the same from the API's answer: under load`.padEnd(49) + `${ms(t.afterAnswer, 50)} ${ms(t.afterAnswer, 99)} ${ms(t.afterAnswer, 100)}`);
  console.log(`                                  at 50/s`.padEnd(49) + `${ms(result.paced.afterAnswer, 50)} ${ms(result.paced.afterAnswer, 99)} ${ms(result.paced.afterAnswer, 100)}`);
  const b = baseline;
  if ('error' in b) {
    console.log(`\nbaseline (bare HTTP POSTs) failed: ${b.error}; no ratios`);
  } else {
    const postsPerSecond = b.posts / b.seconds;
    console.log(`  baseline: one bare POST to the same receiver`.padEnd(49) + `${ms(b.latencies, 50)} ${ms(b.latencies, 99)} ${ms(b.latencies, 100)}`);
    console.log(`\nbaseline: ${b.posts} bare POSTs, ${DISPATCH_CONCURRENCY} at a time: ${postsPerSecond.toFixed(0)}/s`);
    console.log(`ratio events delivered/s ÷ bare POSTs/s: ${(eventsPerSecond / postsPerSecond).toFixed(3)}`);
    console.log(`ratio paced p50 latency ÷ bare POST p50: ${(percentile(result.paced.latencies, 50) / percentile(b.latencies, 50)).toFixed(1)}`);
  }
  const p99 = Math.max(percentile(t.latencies, 99), percentile(result.paced.latencies, 99));
  console.log(`\ngoal p99 ≤ 1000 ms: ${p99 <= 1000 ? 'met' : 'not met'} (worst p99 ${p99.toFixed(0)} ms)`);
} finally {
  await gateway.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
