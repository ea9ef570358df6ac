/**
 * One tenant's CPU-bound queries against another tenant's simple ones: the latency of B's
 * `SELECT 1` while A runs NOISE sessions of a busy loop, beside B's latency with A idle, measured
 * in the same run, once with each compute in a cgroup of its size (PGFLEET_CGROUPS=auto) and once
 * without (PGFLEET_CGROUPS=off). Goal: with cgroups, A does not more than double B's latency (p50 and p99).
 *
 *   node --import ./bin/load-ts.mjs bench/noisy-neighbour.ts      (BENCH_SECONDS=5 per measurement, NOISE=4 sessions of A, A_CU=1)
 *
 * Both computes run on this host; B's client talks to its compute's Unix socket (no proxy), so
 * what is measured is the compute's CPU share, not the gateway.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { type Core, startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { SOCKET_PORT } from '../src/pg/server.ts';
import { percentile } from './stats.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const NOISE = Number(process.env.NOISE ?? 4);
const A_CU = Number(process.env.A_CU ?? 1);

interface Latency { p50: number; p99: number }

async function adminClient(core: Core, branchId: string): Promise<pg.Client> {
  const client = new pg.Client({ host: core.local.layout.socketDir(branchId), port: SOCKET_PORT, user: 'pgfleet_admin', database: 'template1' });
  await client.connect();
  return client;
}

/** B's `SELECT 1` latencies for SECONDS, one after another. */
async function latencyOf(client: pg.Client): Promise<Latency> {
  const ms: number[] = [];
  for (const end = Date.now() + SECONDS * 1000; Date.now() < end;) {
    const t0 = process.hrtime.bigint();
    await client.query('SELECT 1');
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return { p50: percentile(ms, 50), p99: percentile(ms, 99) };
}

async function run(cgroups: 'auto' | 'off'): Promise<{ kind: string; quiet: Latency; noisy: Latency }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
  fs.chmodSync(dataDir, 0o711);
  const config = loadConfig({
    PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'error',
    PGFLEET_ADMIN_KEY: 'bench-admin-key-0123456789', PGFLEET_CGROUPS: cgroups,
  });
  const core = await startCore(config, createLogger('error'));
  try {
    await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'bench')`);
    const a = (await core.databases.create({ partnerId: 'bench', userId: 'noisy', autoscaling: { minCu: A_CU, maxCu: A_CU }, suspendTimeoutSeconds: 0 })).database;
    const b = (await core.databases.create({ partnerId: 'bench', userId: 'quiet', suspendTimeoutSeconds: 0 })).database;
    await core.databases.wake('bench', a.id);
    await core.databases.wake('bench', b.id);
    const bClient = await adminClient(core, b.branchId);
    await latencyOf(bClient); // warm-up
    const quiet = await latencyOf(bClient);

    let stop = false;
    const noise = await Promise.all(Array.from({ length: NOISE }, () => adminClient(core, a.branchId)));
    const loops = noise.map(async (c) => {
      while (!stop) await c.query('SELECT count(*) FROM generate_series(1, 20000000)');
    });
    await new Promise((r) => setTimeout(r, 500)); // the busy loops are running
    const noisy = await latencyOf(bClient);
    stop = true;
    await Promise.all(loops);
    await Promise.all([...noise, bClient].map((c) => c.end()));
    return { kind: core.local.cgroups.host.kind, quiet, noisy };
  } finally {
    await core.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const f = (x: number) => x.toFixed(3).padStart(8);
console.log(`\nnoisy neighbour: ${os.cpus().length} cores, load average ${os.loadavg()[0]!.toFixed(1)}; A runs ${NOISE} busy sessions at ${A_CU} CU; B runs SELECT 1 for ${SECONDS} s`);
console.log('\ncgroups            B p50 ms quiet  noisy  ratio | B p99 ms quiet  noisy  ratio');
const rows = [await run('off'), await run('auto')];
for (const r of rows) {
  console.log(`${r.kind.padEnd(18)} ${f(r.quiet.p50)} ${f(r.noisy.p50)} ${(r.noisy.p50 / r.quiet.p50).toFixed(2).padStart(6)} | ${f(r.quiet.p99)} ${f(r.noisy.p99)} ${(r.noisy.p99 / r.quiet.p99).toFixed(2).padStart(6)}`);
}
const limited = rows[1]!;
if (limited.kind === 'none') console.log('\nthis host offers no cgroups: both rows ran without them');
else {
  const worst = Math.max(limited.noisy.p50 / limited.quiet.p50, limited.noisy.p99 / limited.quiet.p99);
  console.log(`\ngoal: with cgroups, B's p50 and p99 latency at most 2× quiet: worst ${worst.toFixed(2)}× ${worst <= 2 ? 'met' : 'NOT met'}`);
}
