/**
 * One proxy worker's ceiling, and what a 16- and 64-core host would hold, beside PgBouncer's
 * per-process ceiling measured the same way, in one run.
 *
 *   node --import ./bin/load-ts.mjs bench/capacity.ts      (BENCH_SECONDS=10 per run; needs taskset, pgbench, pgbouncer)
 *
 * pgfleet runs as `pgfleet start` with PGFLEET_WORKERS=1; its one worker is pinned to core 0
 * (taskset), pgbench to the other cores. PgBouncer (one process, as deployed one per core with
 * so_reuseport) is pinned to core 0 the same way, before a plain Postgres, TLS and SCRAM as
 * pgfleet. For each: `pgbench -S` at 64 clients (transactions) and `-S -C` at 8 clients
 * (connections), the proxy process's CPU seconds (user + system) over the run, and from them
 * its rate per CPU-second: what one core gives when the proxy has it to itself (when the proxy did
 * not reach 100% of its core, the load generator on the other cores was the limit, so this is the
 * rate per core it used, a projection, not a measured saturation). The projection multiplies by
 * the cores: proxy capacity only (no CPU left for computes or the load), and for pgfleet's -C also
 * by the primary's CPU per connection (every session start is one IPC lease call to the primary,
 * one process: that is the ceiling for connections however many workers run). On a 2-core host
 * with other load, figures are noisy: compare the pgfleet/PgBouncer ratio of the same run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config.ts';
import { PgInstalls } from '../src/pg/install.ts';
import { resolveComputeUser, spawnIdentity } from '../src/pg/os-user.ts';
import { execFileAsync, freePort } from '../test/proxy-helpers.ts';
import { type GatewayProcess, cpuSeconds, startGatewayProcess, workerPids } from './gateway-process.ts';
import { PlainPostgres } from './plain-postgres.ts';
import { settledReading } from './stats.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const cores = os.cpus().length;
const loadCores = cores > 1 ? `1-${cores - 1}` : '0';

interface Run { rate: number; proxyCpu: number; primaryCpu: number }

/** pgbench on the load cores; the rate (tps) and the CPU seconds the proxy (and pgfleet's primary) used per second. */
async function run(conninfo: string, args: string[], password: string, proxyPid: number, primaryPid?: number): Promise<Run> {
  const p0 = cpuSeconds(proxyPid);
  const q0 = primaryPid ? cpuSeconds(primaryPid) : 0;
  const { stdout } = await execFileAsync('taskset', ['-c', loadCores, 'pgbench', ...args, '-n', '-T', String(SECONDS), conninfo], {
    env: { ...process.env, PGPASSWORD: password }, maxBuffer: 16 * 1024 * 1024,
  });
  const rate = Number(/tps = ([\d.]+)/.exec(stdout)?.[1]);
  if (!/number of failed transactions: 0 /.test(stdout) || !Number.isFinite(rate)) throw new Error(`pgbench failed:\n${stdout}`);
  return { rate, proxyCpu: (cpuSeconds(proxyPid) - p0) / SECONDS, primaryCpu: primaryPid ? (cpuSeconds(primaryPid) - q0) / SECONDS : 0 };
}

const modes: [string, string[]][] = [['-S, 64 clients (transactions/s)', ['-S', '-c', '64', '-j', '4']], ['-S -C, 8 clients (connections/s)', ['-S', '-C', '-c', '8', '-j', '4']]];
const results = new Map<string, Map<string, Run | Error>>();
const record = (target: string, mode: string, r: Run | Error) => {
  if (!results.has(target)) results.set(target, new Map());
  results.get(target)!.set(mode, r);
};

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-capacity-'));
fs.chmodSync(dataDir, 0o711);
let gateway: GatewayProcess | undefined;
let bouncer: ChildProcess | undefined;
let plain: PlainPostgres | undefined;
let primaryIdle = 0;
try {
  // pgfleet: one worker on core 0.
  const gw = gateway = await startGatewayProcess(path.join(dataDir, 'gw'), { PGFLEET_WORKERS: '1' });
  const { conninfo } = gw;
  const db = { password: gw.password };
  await execFileAsync('pgbench', ['-i', '-s', '10', '-q', conninfo], { env: { ...process.env, PGPASSWORD: db.password } });
  const workerPid = workerPids(gw.child.pid!)[0]!;
  await execFileAsync('taskset', ['-a', '-pc', '0', String(workerPid)]);
  // The primary's own background (upkeep, store watch, metrics) is not per connection: measured idle, and taken off,
  // once pgbench's load has reached the store (its WAL goes up through the primary): two 2-second readings within
  // 2% of a core of each other.
  primaryIdle = await settledReading(async () => {
    const idle0 = cpuSeconds(gw.child.pid!);
    await new Promise((r) => setTimeout(r, 2000));
    return (cpuSeconds(gw.child.pid!) - idle0) / 2;
  }, 0.02);
  for (const [mode, args] of modes) {
    record('pgfleet (1 worker)', mode, await run(conninfo, args, db.password, workerPid, gw.child.pid).catch((e: Error) => e));
  }

  // PgBouncer: one process on core 0, before a plain Postgres; TLS and SCRAM as pgfleet.
  try {
    const config = loadConfig({ PGFLEET_DATA_DIR: dataDir });
    const user = resolveComputeUser(config.computeUser);
    const install = PgInstalls.discover(config.pgBin, user, dataDir).get();
    plain = new PlainPostgres(install, user, path.join(dataDir, 'plain', 'pgdata'));
    await plain.initdb();
    await plain.start({ max_connections: 200 });
    const password = 'bench-password-0123';
    await plain.psql(`CREATE ROLE bench LOGIN PASSWORD '${password}'`);
    await plain.psql('CREATE DATABASE bench OWNER bench');
    const bdir = path.join(dataDir, 'pgbouncer');
    fs.mkdirSync(bdir, { mode: 0o700 });
    const tls = path.join(dataDir, 'gw', 'tls');
    fs.copyFileSync(path.join(tls, 'server.crt'), path.join(bdir, 'server.crt'));
    fs.copyFileSync(path.join(tls, 'server.key'), path.join(bdir, 'server.key'));
    fs.writeFileSync(path.join(bdir, 'users.txt'), `"bench" "${password}"\n`);
    const port = await freePort();
    fs.writeFileSync(path.join(bdir, 'pgbouncer.ini'), [
      '[databases]', `bench = host=${plain.pgdata} port=5432 dbname=bench user=bench`,
      '[pgbouncer]', 'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'unix_socket_dir =', 'pool_mode = session', 'max_client_conn = 1000', 'default_pool_size = 100',
      'auth_type = scram-sha-256', `auth_file = ${bdir}/users.txt`,
      'client_tls_sslmode = require', `client_tls_cert_file = ${bdir}/server.crt`, `client_tls_key_file = ${bdir}/server.key`,
      `logfile = ${bdir}/pgbouncer.log`, 'log_connections = 0', 'log_disconnections = 0', '',
    ].join('\n'));
    if (user.switchUser) for (const f of [...fs.readdirSync(bdir).map((x) => path.join(bdir, x)), bdir]) fs.chownSync(f, user.uid, user.gid);
    bouncer = spawn('taskset', ['-c', '0', 'pgbouncer', '-q', path.join(bdir, 'pgbouncer.ini')], { ...spawnIdentity(user), stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1000));
    const bconn = `host=127.0.0.1 port=${port} user=bench dbname=bench sslmode=require`;
    await execFileAsync('pgbench', ['-i', '-s', '10', '-q', bconn], { env: { ...process.env, PGPASSWORD: password } });
    for (const [mode, args] of modes) record('PgBouncer (1 process)', mode, await run(bconn, args, password, bouncer.pid!).catch((e: Error) => e));
  } catch (err) {
    console.error(`PgBouncer baseline failed: ${(err as Error).message}`);
  }
} finally {
  bouncer?.kill();
  await plain?.stop().catch(() => {});
  await gateway?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

console.log(`\ncapacity (${cores} cores; proxy pinned to core 0, pgbench to ${loadCores}; ${SECONDS} s a run; load average ${os.loadavg()[0]!.toFixed(1)})\n`);
console.log(`${'target'.padEnd(24)} ${'mode'.padEnd(34)} ${'rate'.padStart(8)} ${'proxy CPU'.padStart(10)} ${'per core'.padStart(9)} ${'16 cores'.padStart(10)} ${'64 cores'.padStart(10)}`);
for (const [target, byMode] of results) {
  for (const [mode, r] of byMode) {
    if (r instanceof Error) {
      console.log(`${target.padEnd(24)} ${mode.padEnd(34)} failed: ${r.message.split('\n')[0]}`);
      continue;
    }
    const perCore = r.rate / r.proxyCpu;
    // pgfleet's connections also pass through its one primary (a lease per session): its ceiling caps the projection.
    const primaryBusy = r.primaryCpu - primaryIdle;
    const primaryCap = primaryBusy > 0 && mode.includes('-C') ? r.rate / primaryBusy : Infinity;
    const at = (n: number) => Math.min(perCore * n, primaryCap);
    console.log(`${target.padEnd(24)} ${mode.padEnd(34)} ${r.rate.toFixed(0).padStart(8)} ${(r.proxyCpu * 100).toFixed(0).padStart(9)}% ${perCore.toFixed(0).padStart(9)} ${at(16).toFixed(0).padStart(10)} ${at(64).toFixed(0).padStart(10)}`
      + (Number.isFinite(primaryCap) ? `  (primary ${(primaryBusy * 100).toFixed(1)}% of a core over its idle ${(primaryIdle * 100).toFixed(1)}%: caps connections at ${primaryCap.toFixed(0)}/s)`
        : r.primaryCpu > 0 && mode.includes('-C') ? `  (primary ${(r.primaryCpu * 100).toFixed(1)}% of a core, no more than its idle ${(primaryIdle * 100).toFixed(1)}%: no cap measured)` : ''));
  }
}
const p = results.get('pgfleet (1 worker)');
const b = results.get('PgBouncer (1 process)');
for (const [mode] of modes) {
  const x = p?.get(mode);
  const y = b?.get(mode);
  if (x && y && !(x instanceof Error) && !(y instanceof Error)) {
    console.log(`per core, pgfleet / PgBouncer, ${mode}: ${((x.rate / x.proxyCpu) / (y.rate / y.proxyCpu)).toFixed(2)}`);
  }
}
console.log('(per core = rate / the proxy\'s CPU seconds per second; projections assume workers scale linearly with cores, leave no core to computes or load, and for pgfleet\'s connections are capped by its one primary)');
