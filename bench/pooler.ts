/**
 * The transaction pooler beside PgBouncer in transaction mode (max_prepared_statements on), in
 * one run against the same compute:
 *   - pgbench -S -C (a new connection per transaction, TLS + SCRAM each time): connections/s;
 *   - pgbench -S -M prepared, 100 clients on a pool of 10: TPS, and p99 latency from pgbench's
 *     per-transaction log;
 *   - pgbench -S -M prepared, 8 clients (fewer than the pool): each keeps its own backend;
 *   - the cost of the session reset (issue 27: a backend that changes clients is given DISCARD
 *     ALL first): every mode also runs against a second pgfleet listener on the same core with
 *     the reset off, and prints pgfleet with / without it (goal ≥ 0.95);
 *   - memory per idle client connection: N clients (a separate process) held open, the
 *     gateway's memory (V8 heap + external memory after GC, and RSS) before and after,
 *     beside PgBouncer's RSS for the same clients.
 *
 *   node --import ./bin/load-ts.mjs bench/pooler.ts     (BENCH_SECONDS=10, BENCH_ROUNDS=3, BENCH_IDLE_CLIENTS=2000)
 *
 * Both take TLS (sslmode=require) and SCRAM over TCP and reach the compute's Unix socket.
 * Targets take turns within each round so that load from elsewhere falls on both alike.
 * PgBouncer tracks protocol-level prepared statements from 1.21 on (max_prepared_statements);
 * an older one (Debian 12 ships 1.18) runs the 100-client mode with -M extended instead, the
 * same messages per transaction without named statements, and the output says so.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startProxy } from '../proxy/server.ts';
import { routeByEndpoint } from '../src/catalog/routes.ts';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { type BaselinePgBouncer, startPgBouncer } from './baseline-access.ts';
import { gatewayMemory, holdIdleClients, release, rssOf } from './idle-sessions.ts';
import { execFileAsync } from '../test/proxy-helpers.ts';
import { percentile } from './stats.ts';

// pgbench counts the time its clients take to connect within -T: 100 TLS + SCRAM connections take seconds.
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IDLE_CLIENTS = Number(process.env.BENCH_IDLE_CLIENTS ?? 2000);
const POOL = 10;

interface Result { tps: number; p99Ms: number; latencyMs: number }
const FAILED: Result = { tps: NaN, p99Ms: NaN, latencyMs: NaN };

/** pgbench with a per-transaction log; p99 from the logged latencies (µs, third column). */
async function pgbench(conninfo: string, args: string[], env: Record<string, string>): Promise<Result> {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgbench-log-'));
  try {
    const { stdout, stderr } = await execFileAsync('pgbench', [...args, '-T', String(SECONDS), '-n', '-l', `--log-prefix=${logDir}/tx`, conninfo], {
      env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024,
    });
    const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1]);
    const latencyMs = Number(/latency average = ([\d.]+) ms/.exec(stdout)?.[1]);
    if (!/number of failed transactions: 0 /.test(stdout) || !Number.isFinite(tps)) throw new Error(`pgbench failed:\n${stdout}\n${stderr}`);
    const latencies: number[] = [];
    for (const file of fs.readdirSync(logDir)) {
      for (const line of fs.readFileSync(path.join(logDir, file), 'utf8').split('\n')) {
        const us = Number(line.split(' ')[2]);
        if (Number.isFinite(us) && line) latencies.push(us / 1000);
      }
    }
    return { tps, latencyMs, p99Ms: percentile(latencies, 99) };
  } finally {
    fs.rmSync(logDir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => percentile(xs, 50);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const config = loadConfig({
  PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn',
  PGFLEET_ADMIN_KEY: 'bench-admin-key-0123456789', PGFLEET_POOL_SIZE: String(POOL), PGFLEET_COMPUTE_MAX_CONNECTIONS: '100',
});
const core = await startCore(config, createLogger('warn'));
const proxy = await startProxy(core, { authLimits: { perAddress: 1e9, slowTargetAfter: 1e9 } });
const noReset = await startProxy(core, { port: 0, authLimits: { perAddress: 1e9, slowTargetAfter: 1e9 }, resetPooledSessions: false, httpPort: undefined });
let bouncer: BaselinePgBouncer | undefined;
try {
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'bench')`);
  const { database, password } = await core.databases.create({ partnerId: 'bench', userId: 'bench-user' });
  const lease = await core.acquire((await routeByEndpoint(core.catalog, database.endpointId))!);
  if (lease.address.kind !== 'unix') throw new Error('the bench needs a local compute');
  const socketDir = path.dirname(lease.address.socketPath);
  const role = database.ownerRole;

  // PgBouncer: transaction pooling with prepared statements, a pool of 10, TLS with pgfleet's certificate, SCRAM against the same verifier.
  const bouncerVersion = /PgBouncer (\d+)\.(\d+)/.exec((await execFileAsync('pgbouncer', ['--version'])).stdout)!;
  const bouncerPrepares = Number(bouncerVersion[1]) > 1 || Number(bouncerVersion[2]) >= 21;
  bouncer = await startPgBouncer(core, {
    dataDir, endpointId: database.endpointId, databaseName: database.databaseName, role, socketDir,
    settings: ['pool_mode = transaction', `default_pool_size = ${POOL}`, ...(bouncerPrepares ? ['max_prepared_statements = 200'] : []), `max_client_conn = ${IDLE_CLIENTS + 200}`],
  });
  const bport = bouncer.port;

  const targets = {
    'pgfleet -pooler': `host=${database.endpointId}-pooler.${config.domain} hostaddr=127.0.0.1 port=${proxy.port} user=${role} dbname=${database.databaseName} sslmode=require`,
    'pgfleet, no reset': `host=${database.endpointId}-pooler.${config.domain} hostaddr=127.0.0.1 port=${noReset.port} user=${role} dbname=${database.databaseName} sslmode=require`,
    'pgbouncer (transaction)': `host=127.0.0.1 port=${bport} user=${role} dbname=${database.databaseName} sslmode=require`,
  };
  const env = { PGPASSWORD: password };
  await execFileAsync('pgbench', ['-i', '-s', '10', '-q', `host=${socketDir} port=5432 user=${role} dbname=${database.databaseName}`]);

  const bouncerMode = bouncerPrepares ? 'prepared' : 'extended';
  const modes = {
    '-S -C, 8 clients': (_: string) => ['-S', '-C', '-c', '8', '-j', '2'],
    '-S -M prepared, 100 clients': (name: string) => ['-S', '-M', name.startsWith('pgbouncer') ? bouncerMode : 'prepared', '-c', '100', '-j', '2'],
    '-S -M prepared, 8 clients': (name: string) => ['-S', '-M', name.startsWith('pgbouncer') ? bouncerMode : 'prepared', '-c', '8', '-j', '2'],
    '-S (simple), 100 clients': (_: string) => ['-S', '-c', '100', '-j', '2'],
  };
  const results: Record<string, Record<string, Result>> = {};
  for (const [mode, args] of Object.entries(modes)) {
    const runs: Record<string, Result[]> = {};
    for (let round = 0; round < ROUNDS; round++) {
      // A target that fails (the baseline included) is reported as failed; the others still count.
      for (const [name, conninfo] of Object.entries(targets)) {
        (runs[name] ??= []).push(await pgbench(conninfo, args(name), env).catch((err: Error) => {
          console.error(`${name}, ${mode}: ${err.message.split('\n').filter((l) => /error|fail|abort/i.test(l)).slice(0, 3).join(' | ')}`);
          return FAILED;
        }));
      }
    }
    results[mode] = Object.fromEntries(Object.entries(runs).map(([name, rs]) => [name, {
      tps: median(rs.map((r) => r.tps)), latencyMs: median(rs.map((r) => r.latencyMs)), p99Ms: median(rs.map((r) => r.p99Ms)),
    }]));
  }
  lease.release();

  // Idle clients: the gateway's memory, and PgBouncer's RSS, per open client connection.
  const before = gatewayMemory();
  const holder = await holdIdleClients({
    host: '127.0.0.1', port: proxy.port, user: role, password, database: database.databaseName, servername: `${database.endpointId}-pooler.${config.domain}`,
  }, IDLE_CLIENTS);
  for (let i = 0; i < 100 && proxy.pooler.clientCount < IDLE_CLIENTS; i++) await new Promise((r) => setTimeout(r, 100));
  const after = gatewayMemory();
  const pooledClients = proxy.pooler.clientCount;
  await release(holder);
  const bouncerBefore = rssOf(bouncer.process.pid!);
  const bouncerHolder = await holdIdleClients({ host: '127.0.0.1', port: bport, user: role, password, database: database.databaseName }, IDLE_CLIENTS);
  const bouncerAfter = rssOf(bouncer.process.pid!);
  await release(bouncerHolder);

  console.log(`\npgbench, scale 10, pool of ${POOL}, ${os.cpus().length} cores, load average ${os.loadavg()[0]!.toFixed(1)}; medians of ${ROUNDS} rounds of ${SECONDS} s`);
  console.log(`PgBouncer ${bouncerVersion[1]}.${bouncerVersion[2]}: the 100-client mode runs -M ${bouncerMode} through it${bouncerPrepares ? '' : ' (no max_prepared_statements before 1.21)'}\n`);
  console.log('mode                           target                       tps   latency ms   p99 ms');
  for (const [mode, byTarget] of Object.entries(results)) {
    for (const [name, r] of Object.entries(byTarget)) {
      console.log(`${mode.padEnd(30)} ${name.padEnd(24)} ${r.tps.toFixed(0).padStart(8)}   ${r.latencyMs.toFixed(3).padStart(10)}   ${r.p99Ms.toFixed(3).padStart(6)}`);
    }
  }
  console.log('\nthe session reset (a backend that changes clients gets DISCARD ALL first): pgfleet with / without it, goal ≥ 0.95');
  for (const [mode, byTarget] of Object.entries(results)) {
    const r = byTarget['pgfleet -pooler']!.tps / byTarget['pgfleet, no reset']!.tps;
    console.log(`  ${mode.padEnd(30)} ${Number.isFinite(r) ? r.toFixed(3) : 'failed'}${Number.isFinite(r) ? (r >= 0.95 ? ' (met)' : ' (NOT met)') : ''}`);
  }
  const c = results['-S -C, 8 clients']!;
  const p = results['-S -M prepared, 100 clients']!;
  const ratio = (r: Record<string, Result>) => r['pgfleet -pooler']!.tps / r['pgbouncer (transaction)']!.tps;
  console.log(`\nconnect per transaction (-C): pgfleet / PgBouncer = ${ratio(c).toFixed(2)} (goal ≥ 1.00: ${ratio(c) >= 1 ? 'met' : 'NOT met'})`);
  console.log(`prepared, 100 clients on ${POOL}: pgfleet / PgBouncer = ${ratio(p).toFixed(2)} (goal ≥ 0.80: ${ratio(p) >= 0.8 ? 'met' : 'NOT met'}); ` +
    `p99 ${p['pgfleet -pooler']!.p99Ms.toFixed(2)} ms vs ${p['pgbouncer (transaction)']!.p99Ms.toFixed(2)} ms`);
  const perClient = (after.heap - before.heap) / pooledClients;
  console.log(`idle pooled clients: ${pooledClients}; gateway heap+external per client ${(perClient / 1024).toFixed(1)} kB (goal ≤ 10 kB: ${perClient <= 10 * 1024 ? 'met' : 'NOT met'}), ` +
    `RSS per client ${((after.rss - before.rss) / pooledClients / 1024).toFixed(1)} kB; PgBouncer RSS per client ${((bouncerAfter - bouncerBefore) / IDLE_CLIENTS / 1024).toFixed(1)} kB`);
} finally {
  bouncer?.process.kill('SIGTERM');
  await noReset.close();
  await proxy.close();
  await core.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
