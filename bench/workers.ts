/**
 * The worker count as a dimension: `pgbench -S` (1, 16, 64, 256 clients) and `-S -C` through
 * `pgfleet start` with PGFLEET_WORKERS=0 (one process: the baseline), 1 and 2, in one run, taking
 * turns on the same data dir (one gateway process at a time, each its own compute start). Prints
 * TPS and the gateway's CPU per transaction (or connection): all its processes together, then the
 * workers each and the primary; and the TPS of each count against the one-process baseline.
 *
 *   node --import ./bin/load-ts.mjs bench/workers.ts      (BENCH_SECONDS=5 per run, plus 1 s per 8 clients to connect; BENCH_ROUNDS=1;
 *                                 BENCH_MODES=16,-C to pick; BENCH_WORKERS=0,1,2 the counts)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileAsync } from '../test/proxy-helpers.ts';
import { cpuSeconds, startGatewayProcess, workerPids } from './gateway-process.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const wanted = process.env.BENCH_MODES?.split(',');
const MODES: [string, string[]][] = ([
  ['-S, 1 client', ['-S', '-c', '1']],
  ['-S, 16 clients', ['-S', '-c', '16', '-j', '2']],
  ['-S, 64 clients', ['-S', '-c', '64', '-j', '2']],
  ['-S, 256 clients', ['-S', '-c', '256', '-j', '2']],
  ['-S -C, 8 clients', ['-S', '-C', '-c', '8', '-j', '2']],
] as [string, string[]][]).filter(([name]) => !wanted || wanted.some((w) => name.includes(w)));

const COUNTS = (process.env.BENCH_WORKERS ?? '0,1,2').split(',').map(Number);

interface Cell { tps: number; perTxUs: number; perWorkerUs: number[]; primaryUs: number }
const cells = new Map<string, Map<number, Cell[]>>();

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-workers-'));
fs.chmodSync(dataDir, 0o711);
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const workers of COUNTS) {
      const gw = await startGatewayProcess(dataDir, { PGFLEET_WORKERS: String(workers) });
      try {
        const env = { ...process.env, PGPASSWORD: gw.password };
        // Each start provisions its own database: its pgbench tables too.
        await execFileAsync('pgbench', ['-i', '-s', '1', '-q', gw.conninfo], { env });
        const pids = workerPids(gw.child.pid!);
        for (const [mode, args] of MODES) {
          await execFileAsync('pgbench', [...args, '-n', '-T', '2', gw.conninfo], { env, maxBuffer: 16 << 20 }).catch(() => {}); // warm-up
          const w0 = pids.map(cpuSeconds);
          const p0 = cpuSeconds(gw.child.pid!);
          // pgbench's clock runs while its clients connect (TLS + SCRAM each, 70 ms apiece on a loaded 2-core
          // host): time for that is added, and tps is pgbench's "without initial connection time".
          const clients = Number(args[args.indexOf('-c') + 1]);
          const seconds = SECONDS + (args.includes('-C') ? 0 : Math.ceil(clients / 8));
          const { stdout } = await execFileAsync('pgbench', [...args, '-n', '-T', String(seconds), gw.conninfo], { env, maxBuffer: 16 << 20 })
            .catch((err: { stdout?: string; stderr?: string }) => {
              console.error(`${workers} worker(s), ${mode}: ${String(err.stderr ?? '').split('\n')[0]}`);
              return { stdout: err.stdout ?? '' };
            });
          const n = Number(/actually processed: (\d+)/.exec(stdout)?.[1] ?? 0);
          const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? 0);
          if (!n) {
            console.error(`${workers} worker(s), ${mode}: pgbench processed nothing`);
            continue;
          }
          // CPU over the whole run, connections included: at many clients it is a little more than per transaction.
          const perWorkerUs = pids.map((pid, i) => ((cpuSeconds(pid) - w0[i]!) * 1e6) / n);
          const primaryUs = ((cpuSeconds(gw.child.pid!) - p0) * 1e6) / n;
          const cell = { tps, perTxUs: perWorkerUs.reduce((a, b) => a + b, primaryUs), perWorkerUs, primaryUs };
          if (!cells.has(mode)) cells.set(mode, new Map());
          const byCount = cells.get(mode)!;
          byCount.set(workers, [...(byCount.get(workers) ?? []), cell]);
        }
      } finally {
        await gw.stop();
      }
    }
  }
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`\nworkers (${os.cpus().length} cores; ${ROUNDS} round(s) of ${SECONDS} s; load average ${os.loadavg()[0]!.toFixed(1)})`);
console.log('per count: tps; CPU µs per transaction (per connection for -C) of all the gateway\'s processes [the workers each + the primary];');
console.log(`tps against the baseline, ${COUNTS[0]} worker(s)${COUNTS[0] === 0 ? ' (one process)' : ''}\n`);
for (const [mode, byCount] of cells) {
  const line = [mode.padEnd(18)];
  const base = byCount.get(COUNTS[0]!);
  for (const count of COUNTS) {
    const cs = byCount.get(count);
    if (!cs) {
      line.push(`${count}: (a run failed)`);
      continue;
    }
    const m = (f: (c: Cell) => number) => median(cs.map(f));
    const parts = [...cs[0]!.perWorkerUs.map((_, i) => m((c) => c.perWorkerUs[i] ?? 0).toFixed(0)), m((c) => c.primaryUs).toFixed(0)];
    const ratio = base && count !== COUNTS[0] ? ` ${(m((c) => c.tps) / median(base.map((c) => c.tps))).toFixed(2)}×` : '';
    line.push(`${count}: ${m((c) => c.tps).toFixed(0).padStart(5)} tps ${m((c) => c.perTxUs).toFixed(0).padStart(5)} µs [${parts.join('+')}]${ratio}`);
  }
  console.log(line.join('   '));
}
