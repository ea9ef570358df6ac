/**
 * A fleet beside one gateway and beside Postgres behind HAProxy, in one run:
 *  - pgbench -S (8 clients) and -S -C (connect per transaction, 4 clients) through
 *    (a) HAProxy → two gateways (Redis), (b) one gateway of that fleet alone (the owning node),
 *    (c) one gateway without Redis (same external catalog), (d) HAProxy → Postgres direct;
 *  - wake latency (suspended → first row) p50/p99 with Redis (fleet gateway) and without.
 * The tenant database lives on gateway 1; through HAProxy about half the sessions land on
 * gateway 2 and cross the node link. (d) is plain TCP without TLS or SCRAM, the floor.
 *
 *   node --import ./bin/load-ts.mjs bench/fleet.ts [seconds=10] [wakes=20]
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ADMIN_KEY, type Fleet, call, startFleet } from '../test/fleet/topology.ts';
import { freePort } from '../test/proxy-helpers.ts';
import { percentile, timed } from './stats.ts';

const execFileAsync = promisify(execFile);
const SECONDS = Number(process.argv[2] ?? 10);
const WAKES = Number(process.argv[3] ?? 20);

interface Target {
  env: Record<string, string>;
}

const progress = (what: string) => process.stderr.write(`fleet bench: ${what}\n`);

async function tenant(fleet: Fleet, via: string) {
  const partner = await call(via, 'POST', '/v1/partners', ADMIN_KEY, { name: 'bench' });
  const db = await call(via, 'POST', '/v1/databases', partner.body.api_key, { user_id: 'bench', suspend_timeout_seconds: 0 });
  if (db.status !== 201) throw new Error(`could not create the bench database: ${db.status} ${JSON.stringify(db.body)}`);
  return { key: partner.body.api_key as string, id: db.body.id as string, endpoint: db.body.endpoint_id as string, role: db.body.role as string, password: db.body.password as string, fleet };
}

const through = (port: number, t: { endpoint: string; role: string; password: string }): Target => ({
  env: { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: t.role, PGPASSWORD: t.password, PGDATABASE: 'app', PGSSLMODE: 'require', PGOPTIONS: `endpoint=${t.endpoint}` },
});

async function pgbench(target: Target, args: string[]): Promise<number> {
  progress(`pgbench ${args.join(' ')} on port ${target.env.PGPORT}`);
  const { stdout } = await execFileAsync('pgbench', [...args, '-n', '-T', String(SECONDS)], { env: { ...process.env, ...target.env } });
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1]);
  if (!/number of failed transactions: 0 /.test(stdout) || !Number.isFinite(tps)) throw new Error(`pgbench failed:\n${stdout}`);
  return tps;
}

async function wakeLatencies(t: Awaited<ReturnType<typeof tenant>>, apiUrl: string, port: number): Promise<number[]> {
  progress(`${WAKES} wakes through port ${port}`);
  const samples: number[] = [];
  const env = { ...process.env, ...through(port, t).env };
  for (let i = 0; i < WAKES; i++) {
    const r = await call(apiUrl, 'POST', `/v1/databases/${t.id}/suspend`, t.key);
    if (r.status !== 200) throw new Error(`suspend: ${r.status}`);
    samples.push(await timed(() => execFileAsync('psql', ['-X', '-Atc', 'SELECT 1'], { env })));
  }
  return samples;
}

async function haproxyTo(port: number): Promise<{ port: number; stop(): Promise<void> }> {
  const lbPort = await freePort();
  const cfg = path.join(os.tmpdir(), `bench-haproxy-${lbPort}.cfg`);
  fs.writeFileSync(cfg, `defaults\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\nfrontend pg\n  mode tcp\n  bind 127.0.0.1:${lbPort}\n  default_backend pg\nbackend pg\n  mode tcp\n  server pg 127.0.0.1:${port}\n`);
  const child = spawn('haproxy', ['-f', cfg, '-db'], { stdio: 'ignore' });
  const listening = () => new Promise<boolean>((resolve) => {
    const s = net.connect(lbPort, '127.0.0.1', () => resolve(true)).on('error', () => resolve(false));
    s.unref();
    setTimeout(() => s.destroy(), 100);
  });
  for (let i = 0; !(await listening()); i++) {
    if (i > 200) throw new Error('haproxy did not listen');
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    port: lbPort,
    stop: () => new Promise<void>((r) => {
      child.once('exit', () => r());
      child.kill('SIGTERM');
      fs.rmSync(cfg, { force: true });
    }),
  };
}

const results: { name: string; select: number; connect: number }[] = [];
const wakes: { name: string; samples: number[] }[] = [];

// (a), (b): a fleet of two.
const fleet = await startFleet({ gateways: 2 });
try {
  const [g1] = fleet.gateways;
  const t = await tenant(fleet, g1!.apiUrl);
  await execFileAsync('pgbench', ['-i', '-s', '1', '-q'], { env: { ...process.env, ...through(g1!.proxyPort, t).env } });
  for (const [name, port] of [['HAProxy → 2 gateways (Redis)', fleet.lb.proxyPort], ['1 gateway of the fleet (Redis)', g1!.proxyPort]] as const) {
    results.push({ name, select: await pgbench(through(port, t), ['-S', '-c', '8', '-j', '2']), connect: await pgbench(through(port, t), ['-S', '-C', '-c', '4', '-j', '2']) });
  }
  wakes.push({ name: 'wake with Redis (fleet gateway)', samples: await wakeLatencies(t, g1!.apiUrl, g1!.proxyPort) });

  // (d): HAProxy → the catalog's Postgres, plain TCP, a pgbench database of its own.
  const catalogPort = Number(new URL(fleet.catalogUrl).port);
  await execFileAsync('psql', ['-X', '-d', fleet.catalogUrl, '-c', 'CREATE DATABASE bench']);
  const direct: Target = { env: { PGHOST: '127.0.0.1', PGPORT: String(catalogPort), PGUSER: 'pgfleet_admin', PGDATABASE: 'bench', PGSSLMODE: 'disable' } };
  await execFileAsync('pgbench', ['-i', '-s', '1', '-q'], { env: { ...process.env, ...direct.env } });
  const lb = await haproxyTo(catalogPort);
  try {
    const viaLb = { env: { ...direct.env, PGPORT: String(lb.port) } };
    results.push({ name: 'HAProxy → Postgres direct (no TLS)', select: await pgbench(viaLb, ['-S', '-c', '8', '-j', '2']), connect: await pgbench(viaLb, ['-S', '-C', '-c', '4', '-j', '2']) });
  } finally {
    await lb.stop();
  }
} finally {
  await fleet.stop();
}

// (c): one gateway on an external catalog, no Redis.
const alone = await startFleet({ gateways: 1, redis: false });
try {
  const g = alone.gateways[0]!;
  const t = await tenant(alone, g.apiUrl);
  await execFileAsync('pgbench', ['-i', '-s', '1', '-q'], { env: { ...process.env, ...through(g.proxyPort, t).env } });
  results.splice(2, 0, { name: '1 gateway without Redis', select: await pgbench(through(g.proxyPort, t), ['-S', '-c', '8', '-j', '2']), connect: await pgbench(through(g.proxyPort, t), ['-S', '-C', '-c', '4', '-j', '2']) });
  wakes.push({ name: 'wake without Redis', samples: await wakeLatencies(t, g.apiUrl, g.proxyPort) });
} finally {
  await alone.stop();
}

const base = results.find((r) => r.name === '1 gateway without Redis')!;
console.log(`\nfleet bench: ${os.cpus().length} cores, load average ${os.loadavg()[0]!.toFixed(1)}, pgbench scale 1, ${SECONDS} s per run`);
console.log(`${'path'.padEnd(38)} ${'-S tps'.padStart(9)} ${'ratio'.padStart(6)} ${'-S -C tps'.padStart(10)} ${'ratio'.padStart(6)} ${'ms/connect'.padStart(11)}`);
for (const r of results) {
  console.log(`${r.name.padEnd(38)} ${r.select.toFixed(0).padStart(9)} ${(r.select / base.select).toFixed(2).padStart(6)} ${r.connect.toFixed(0).padStart(10)} ${(r.connect / base.connect).toFixed(2).padStart(6)} ${(4000 / r.connect).toFixed(2).padStart(11)}`);
}
console.log('(ratios to "1 gateway without Redis" in this run; ms/connect = 4 clients / connect-per-transaction tps)');
const noRedis = wakes.find((w) => w.name === 'wake without Redis')!;
console.log(`\n${'wake (suspended → first row, psql)'.padEnd(38)} ${'n'.padStart(4)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'p50 ratio'.padStart(10)}`);
for (const w of wakes) {
  console.log(`${w.name.padEnd(38)} ${String(w.samples.length).padStart(4)} ${percentile(w.samples, 50).toFixed(1).padStart(8)} ${percentile(w.samples, 99).toFixed(1).padStart(8)} ${(percentile(w.samples, 50) / percentile(noRedis.samples, 50)).toFixed(2).padStart(10)}`);
}
