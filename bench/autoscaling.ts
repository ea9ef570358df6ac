/**
 * Autoscaling, in one run (each part beside its baseline, measured in the same run; a part that
 * fails is reported and the others still run):
 *  1. time from a tenant's load starting (LOAD busy sessions) to its compute reaching its ceiling
 *     (range 0.25–CEILING CU; goal ≤ 2 s), and its throughput from then on as a ratio of a compute
 *     fixed at that ceiling running the same load (goal ≥ 0.9);
 *  2. a neighbour's `SELECT 1` p50/p99 while the tenant is pegged at its ceiling, beside the
 *     neighbour alone (goal ≤ 1.5×);
 *  3. the scaler's CPU per running compute per second of sampling, with SCALER_COMPUTES idle
 *     computes running (default 40: 200 computes do not fit beside the other work on a small shared
 *     host; the cost is one round of reads per compute, so it is given per compute and for 200).
 *
 *   node --import ./bin/load-ts.mjs bench/autoscaling.ts     (BENCH_SECONDS=5, LOAD=4, CEILING=2, SCALER_COMPUTES=40, BENCH_PARTS=1,2,3)
 *
 * Clients talk to the computes' Unix sockets (no proxy): what is measured is the computes' CPU.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { type Core, startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { SOCKET_PORT } from '../src/pg/server.ts';
import { SCALER_INTERVAL_MS } from '../src/providers/local/autoscaler.ts';
import { percentile } from './stats.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LOAD = Number(process.env.LOAD ?? 4);
const CEILING = Number(process.env.CEILING ?? 2);
const SCALER_COMPUTES = Number(process.env.SCALER_COMPUTES ?? 40);
/** Which parts run (BENCH_PARTS=3: only the scaler's overhead). */
const PARTS = new Set((process.env.BENCH_PARTS ?? '1,2,3').split(','));
/** One unit of the tenant's work: a CPU-bound query of a few ms. */
const WORK = 'SELECT count(*) FROM generate_series(1, 200000)';

const client = async (core: Core, branchId: string) => {
  const c = new pg.Client({ host: core.local.layout.socketDir(branchId), port: SOCKET_PORT, user: 'pgfleet_admin', database: 'template1' });
  c.on('error', () => {});
  await c.connect();
  return c;
};

async function database(core: Core, userId: string, minCu: number, maxCu: number): Promise<string> {
  const db = (await core.databases.create({ partnerId: 'bench', userId, autoscaling: { minCu, maxCu }, suspendTimeoutSeconds: 0 })).database;
  await core.databases.wake('bench', db.id);
  return db.branchId;
}

/** LOAD sessions running WORK back to back until stop(); `done` counts finished queries. */
async function load(core: Core, branchId: string) {
  const sessions = await Promise.all(Array.from({ length: LOAD }, () => client(core, branchId)));
  let running = true;
  const counter = { done: 0 };
  const loops = sessions.map(async (c) => {
    while (running) await c.query(WORK).then(() => counter.done++, () => {});
  });
  return {
    counter,
    async stop() {
      running = false;
      await Promise.all(loops);
      await Promise.all(sessions.map((c) => c.end()));
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Queries per second of the load over SECONDS. */
async function throughput(counter: { done: number }): Promise<number> {
  const before = counter.done;
  const t0 = Date.now();
  await sleep(SECONDS * 1000);
  return ((counter.done - before) * 1000) / (Date.now() - t0);
}

async function selectOneLatency(c: pg.Client): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (const end = Date.now() + SECONDS * 1000; Date.now() < end;) {
    const t0 = process.hrtime.bigint();
    await c.query('SELECT 1');
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return { p50: percentile(ms, 50), p99: percentile(ms, 99) };
}

async function part(name: string, fn: () => Promise<void>): Promise<void> {
  if (/^\d\./.test(name) && !PARTS.has(name[0]!)) return;
  try {
    await fn();
  } catch (err) {
    console.log(`${name}: FAILED (${(err as Error).message}); the other parts go on`);
  }
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const config = loadConfig({
  PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'error', PGFLEET_ADMIN_KEY: 'bench-admin-key-0123456789',
  PGFLEET_AUTOSCALING_SCALE_DOWN_AFTER: '600', PGFLEET_MAX_COMPUTES: String(SCALER_COMPUTES + 10),
});
const core = await startCore(config, createLogger('error'));
const f = (x: number, d = 2) => x.toFixed(d);
console.log(`\nautoscaling: ${os.cpus().length} cores, load average ${f(os.loadavg()[0]!, 1)}; ${core.local.cgroups.describe()}`);
try {
  if (!core.local.cgroups.enabled) throw new Error('this host offers no cgroups: nothing scales');
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'bench')`);
  const scaled = await database(core, 'scaled', 0.25, CEILING);
  const fixed = await database(core, 'fixed', CEILING, CEILING);
  const neighbour = await database(core, 'neighbour', 0.25, 0.25);
  // Each compute's own start-up is behind it: the scaled one back at its floor.
  await core.local.scaler.setRange(scaled, { minCu: 0.25, maxCu: CEILING });
  for (const deadline = Date.now() + 10_000; core.local.scaler.sizeOf(scaled) !== 0.25 && Date.now() < deadline;) await sleep(50);

  await part('1. time to ceiling and throughput', async () => {
    let fixedQps = NaN;
    await part('   baseline (fixed at the ceiling)', async () => {
      const l = await load(core, fixed);
      await sleep(500);
      fixedQps = await throughput(l.counter);
      await l.stop();
    });
    const l = await load(core, scaled);
    const t0 = Date.now();
    const reached: Record<string, number> = {};
    while (Date.now() - t0 < 20_000 && core.local.scaler.sizeOf(scaled)! < CEILING) {
      const cu = core.local.scaler.sizeOf(scaled)!;
      reached[cu] ??= Date.now() - t0;
      await sleep(10);
    }
    const toCeiling = core.local.scaler.sizeOf(scaled) === CEILING ? Date.now() - t0 : undefined;
    const scaledQps = await throughput(l.counter);
    await l.stop();
    console.log(`\n1. a tenant's load (${LOAD} sessions of "${WORK}") from its floor 0.25 CU to its ceiling ${CEILING} CU`);
    console.log(`   sizes reached at (ms after the load started): ${Object.entries(reached).map(([cu, ms]) => `${cu} CU @ ${ms}`).join(', ')}`);
    console.log(toCeiling === undefined
      ? `   ceiling NOT reached in 20 s (size ${core.local.scaler.sizeOf(scaled)} CU: the host gave it less than its quota, so it was not throttled)`
      : `   time to ceiling: ${toCeiling} ms (goal ≤ 2000 ms: ${toCeiling <= 2000 ? 'met' : 'NOT met'})`);
    console.log(`   throughput then: ${f(scaledQps, 1)} q/s vs ${f(fixedQps, 1)} q/s fixed at ${CEILING} CU = ×${f(scaledQps / fixedQps)} (goal ≥ 0.9: ${scaledQps / fixedQps >= 0.9 ? 'met' : 'NOT met'})`);
  });

  await part('2. neighbour latency', async () => {
    const c = await client(core, neighbour);
    await selectOneLatency(c); // warm-up
    const alone = await selectOneLatency(c);
    const l = await load(core, scaled);
    for (const deadline = Date.now() + 20_000; core.local.scaler.sizeOf(scaled)! < CEILING && Date.now() < deadline;) await sleep(50);
    const beside = await selectOneLatency(c);
    const size = core.local.scaler.sizeOf(scaled);
    await l.stop();
    await c.end();
    const worst = Math.max(beside.p50 / alone.p50, beside.p99 / alone.p99);
    console.log(`\n2. a neighbour's SELECT 1 (0.25 CU) while the tenant runs ${LOAD} busy sessions at ${size} CU`);
    console.log(`   alone:  p50 ${f(alone.p50, 3)} ms  p99 ${f(alone.p99, 3)} ms`);
    console.log(`   beside: p50 ${f(beside.p50, 3)} ms  p99 ${f(beside.p99, 3)} ms  (×${f(beside.p50 / alone.p50)} p50, ×${f(beside.p99 / alone.p99)} p99; goal ≤ 1.5×: ${worst <= 1.5 ? 'met' : 'NOT met'})`);
  });

  await part('3. scaler overhead', async () => {
    for (let i = 0; i < SCALER_COMPUTES - 3; i++) await database(core, `idle-${i}`, 0.25, 1);
    const followed = core.local.running.all().length;
    const [cpu0, samples0, t0] = [core.local.scaler.sampleCpuUs, core.local.scaler.samples, Date.now()];
    await sleep(Math.max(10, SECONDS * 2) * 1000);
    const cpuUs = core.local.scaler.sampleCpuUs - cpu0;
    const seconds = (Date.now() - t0) / 1000;
    const perCompute = cpuUs / seconds / followed; // µs of CPU per compute per second
    console.log(`\n3. the scaler, ${followed} running computes sampled every ${SCALER_INTERVAL_MS} ms for ${f(seconds, 1)} s (${core.local.scaler.samples - samples0} samples)`);
    console.log(`   CPU: ${f(cpuUs / 1000 / seconds, 2)} ms per second in all = ${f(perCompute, 1)} µs per compute per second (${f(perCompute / 1e4, 4)}% of a CPU each)`);
    console.log(`   at 200 running computes (linear: one round of reads each): ~${f((perCompute * 200) / 1000, 1)} ms of CPU per second (${f((perCompute * 200) / 1e4, 2)}% of one CPU); measured with ${followed}, not 200`);
  });
} finally {
  await core.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
