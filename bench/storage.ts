/**
 * The store on the hot path and at wake, with an S3 server (s3rver) as the store, each beside a
 * baseline measured in the same run:
 *  - RPO under steady writes (async): how far the newest commit in the store trails the newest
 *    committed, sampled; beside a plain Postgres shipping its WAL with archive_command and
 *    archive_timeout = PGFLEET_STORAGE_MAX_LAG (what a DBA would set up);
 *  - wake of an evicted database (from the store) beside a wake from the node's disk, empty and at
 *    pgbench scale 7 (~100 MB);
 *  - the cost of streaming: pgbench TPC-B on a compute's socket (its WAL streamed to the store)
 *    beside a plain Postgres with the same settings and no receiver; and through pgfleet's proxy.
 * Run: node --import ./bin/load-ts.mjs bench/storage.ts        (BENCH_SECONDS=10, BENCH_WAKES=5, BENCH_PARTS=rpo,wake,tpcb)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startGateway } from '../main.ts';
import { routeByDatabase } from '../src/catalog/routes.ts';
import { parseLsn } from '../src/providers/point-in-time.ts';
import { WAL_SEGMENT_MB } from '../src/pg/server.ts';
import { computeSettings } from '../src/providers/local/compute-settings.ts';
import { testConfig } from '../test/helpers.ts';
import { startS3 } from '../test/s3-server.ts';
import { PlainPostgres } from './plain-postgres.ts';
import { percentile, printLatencyTable, timed } from './stats.ts';

const execFileAsync = promisify(execFile);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const wakes = Number(process.env.BENCH_WAKES ?? 5);
const parts = (process.env.BENCH_PARTS ?? 'rpo,wake,tpcb').split(',');
const MAX_LAG_S = 1;

const s3 = await startS3();
// Computes as large as the host (a CU is a CPU): the TPC-B baseline is a plain, uncapped Postgres.
const config = testConfig({
  PGFLEET_COMPUTE_UNITS: String(os.cpus().length),
  PGFLEET_LOG_LEVEL: 'warn', PGFLEET_STORAGE_URL: s3.url('bench'), PGFLEET_SECRET_KEY: '22'.repeat(32),
  PGFLEET_STORAGE_MAX_LAG: String(MAX_LAG_S), PGFLEET_LOCAL_EVICT_AFTER: '86400', PGFLEET_WAKE_TIMEOUT: '120',
});
const gw = await startGateway(config);
const { core } = gw;
const local = core.local;
await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('bench', 'bench')`);
const asGateway = { env: { PATH: process.env.PATH } };

async function newDatabase(user: string) {
  const { database, password } = await core.databases.create({ partnerId: 'bench', userId: user, suspendTimeoutSeconds: 0 });
  const route = (await routeByDatabase(core.catalog, database.id))!;
  return { database, password, ref: core.targetFor(route).ref };
}
const clientOf = (db: Awaited<ReturnType<typeof newDatabase>>) => new pg.Client({
  host: '127.0.0.1', port: gw.proxyPort, user: db.database.ownerRole, password: db.password, database: db.database.databaseName,
  ssl: { rejectUnauthorized: false }, options: `endpoint=${db.database.endpointId}`,
});
async function firstRow(db: Awaited<ReturnType<typeof newDatabase>>): Promise<void> {
  const c = clientOf(db);
  await c.connect();
  await c.query('SELECT 1');
  await c.end();
}

/** Commits one row at a time for `ms`; calls sample() every 50 ms with the newest commit's time and LSN. */
async function steadyWrites(c: pg.Client, ms: number, sample: (newest: { at: number; lsn: bigint }) => Promise<void>): Promise<void> {
  await c.query('CREATE TABLE IF NOT EXISTS events (n bigserial, at timestamptz DEFAULT clock_timestamp(), pad text)');
  let newest = { at: Date.now(), lsn: 0n };
  let stop = false;
  const writer = (async () => {
    while (!stop) {
      const { rows } = await c.query(`INSERT INTO events (pad) VALUES (repeat('x', 200)) RETURNING pg_current_wal_insert_lsn()::text AS lsn`);
      newest = { at: Date.now(), lsn: parseLsn(rows[0].lsn) };
    }
  })();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    await sample(newest);
  }
  stop = true;
  await writer;
}

/** For each sample: how long ago the newest commit that is stored was made, given what was stored then. */
function rpoOf(commits: { at: number; lsn: bigint }[], samples: { at: number; stored: bigint }[]): number[] {
  return samples.map((s) => {
    const inStore = commits.filter((c) => c.lsn <= s.stored && c.at <= s.at).at(-1);
    const newest = commits.filter((c) => c.at <= s.at).at(-1);
    if (!newest) return 0;
    return inStore ? newest.at - inStore.at : newest.at - commits[0]!.at;
  });
}

if (parts.includes('rpo')) {
  const db = await newDatabase('rpo');
  const c = clientOf(db);
  await c.connect();
  const commits: { at: number; lsn: bigint }[] = [];
  const samples: { at: number; stored: bigint }[] = [];
  await steadyWrites(c, seconds * 1000, async (newest) => {
    if (commits.at(-1)?.lsn !== newest.lsn) commits.push(newest);
    samples.push({ at: Date.now(), stored: local.running.storedPosition(db.ref.branchId) ?? 0n });
  });
  await c.end();
  const pgfleetRpo = rpoOf(commits, samples);

  // Baseline: archive_command + archive_timeout on a plain Postgres with the compute's settings.
  const dir = path.join(config.dataDir, 'plain-rpo');
  const plain = new PlainPostgres(core.installs.get(), core.user, path.join(dir, 'pgdata'));
  const archive = path.join(dir, 'archive');
  let baselineRpo: number[] = [];
  try {
    await plain.initdb();
    fs.mkdirSync(archive);
    fs.chownSync(archive, core.user.uid, core.user.gid);
    await plain.start({ archive_mode: 'on', archive_timeout: MAX_LAG_S, archive_command: `'cp %p ${archive}/%f'`, wal_level: 'replica' });
    const b = new pg.Client({ host: plain.pgdata, user: 'postgres', database: 'postgres' });
    await b.connect();
    const admin = new pg.Client({ host: plain.pgdata, user: 'postgres', database: 'postgres' });
    await admin.connect();
    const bCommits: { at: number; lsn: bigint }[] = [];
    const bSamples: { at: number; stored: bigint }[] = [];
    await steadyWrites(b, seconds * 1000, async (newest) => {
      if (bCommits.at(-1)?.lsn !== newest.lsn) bCommits.push(newest);
      // The end of the last archived segment is how far the archive holds the WAL.
      const { rows } = await admin.query(`SELECT last_archived_wal AS seg FROM pg_stat_archiver`);
      const seg = rows[0].seg as string | null;
      const stored = seg ? (BigInt(`0x${seg.slice(8, 16)}`) * 0x100000000n + BigInt(`0x${seg.slice(16, 24)}`) * 16777216n + 16777216n) : 0n;
      bSamples.push({ at: Date.now(), stored });
    });
    await b.end();
    await admin.end();
    baselineRpo = rpoOf(bCommits, bSamples);
  } catch (err) {
    console.log(`(the archive baseline failed: ${(err as Error).message.split('\n')[0]})`);
  } finally {
    await plain.stop().catch(() => {});
  }
  console.log(`\nRPO under steady writes (${seconds} s, one commit at a time, PGFLEET_STORAGE_MAX_LAG=${MAX_LAG_S} s): ms the newest stored commit trails the newest`);
  console.log(`  pgfleet (WAL receiver → S3)            p50 ${percentile(pgfleetRpo, 50).toFixed(0)}  p99 ${percentile(pgfleetRpo, 99).toFixed(0)}  (${commits.length} commits)`);
  console.log(`  plain archive_timeout=${MAX_LAG_S} s (16 MB segments)  p50 ${percentile(baselineRpo, 50).toFixed(0)}  p99 ${percentile(baselineRpo, 99).toFixed(0)}`);
  console.log(`  ratio p99 pgfleet / baseline: ${(percentile(pgfleetRpo, 99) / percentile(baselineRpo, 99)).toFixed(2)}`);
}

if (parts.includes('wake')) {
  for (const scale of [0, 7]) {
    const db = await newDatabase(`wake-${scale}`);
    await firstRow(db);
    if (scale > 0) {
      const socketDir = local.layout.socketDir(db.ref.branchId);
      await execFileAsync('pgbench', ['-i', '-q', '-s', String(scale), '-h', socketDir, '-p', '5432', '-U', 'pgfleet_admin', db.database.databaseName], asGateway);
    }
    const fromDisk: number[] = [];
    const fromStore: number[] = [];
    for (let i = 0; i < wakes; i++) {
      await core.computes.suspend(db.ref.branchId);
      fromDisk.push(await timed(() => firstRow(db)));
      await core.computes.suspend(db.ref.branchId);
      await local.files.evict(db.ref);
      fromStore.push(await timed(() => firstRow(db)));
    }
    const base = { name: 'wake from the node\'s disk', samples: fromDisk };
    printLatencyTable(`wake to first row, ${scale === 0 ? 'an empty database' : `pgbench scale ${scale}`}, ${wakes} wakes each`, [base, { name: 'wake of the evicted database from S3', samples: fromStore }], base);
  }
}

if (parts.includes('tpcb')) {
  const db = await newDatabase('tpcb');
  await firstRow(db);
  const socketDir = local.layout.socketDir(db.ref.branchId);
  const pgbenchArgs = ['-c', '4', '-j', '2', '-T', String(seconds), '-n'];
  // As the tenant's owner (its socket admits the gateway's OS user as any role), so the proxy's run can use the tables too.
  const owner = ['-h', socketDir, '-p', '5432', '-U', db.database.ownerRole, db.database.databaseName];
  await execFileAsync('pgbench', ['-i', '-q', '-s', '2', ...owner], asGateway);
  const tps = (out: string) => Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? NaN);
  const streamed = tps((await execFileAsync('pgbench', [...pgbenchArgs, ...owner], asGateway)).stdout);
  const env = { ...process.env, PGPASSWORD: db.password, PGSSLMODE: 'require', PGOPTIONS: `endpoint=${db.database.endpointId}` };
  const proxied = tps((await execFileAsync('pgbench', [...pgbenchArgs, '-h', '127.0.0.1', '-p', String(gw.proxyPort), '-U', db.database.ownerRole, db.database.databaseName], { env })).stdout);
  // Baseline: the same settings on a plain cluster, no receiver.
  const plain = new PlainPostgres(core.installs.get(), core.user, path.join(config.dataDir, 'plain-tpcb', 'pgdata'));
  let bare = NaN;
  try {
    await plain.initdb(WAL_SEGMENT_MB);
    const settings = Object.fromEntries(Object.entries(computeSettings(db.ref, config.compute)).filter(([k]) => !['cluster_name', 'log_line_prefix', 'unix_socket_permissions'].includes(k)));
    await plain.start(settings);
    await execFileAsync('pgbench', ['-i', '-q', '-s', '2', '-h', plain.pgdata, '-U', 'postgres', 'postgres'], asGateway);
    bare = tps((await execFileAsync('pgbench', [...pgbenchArgs, '-h', plain.pgdata, '-U', 'postgres', 'postgres'], asGateway)).stdout);
  } catch (err) {
    console.log(`(the plain baseline failed: ${(err as Error).message.split('\n')[0]})`);
  } finally {
    await plain.stop().catch(() => {});
  }
  console.log(`\npgbench TPC-B, 4 clients, ${seconds} s, scale 2`);
  console.log(`  plain Postgres, same settings, no receiver     ${bare.toFixed(0)} tps`);
  console.log(`  pgfleet compute (socket), WAL streamed to S3  ${streamed.toFixed(0)} tps  ratio ${(streamed / bare).toFixed(3)} (the cost of streaming)`);
  console.log(`  through pgfleet's proxy (TLS, SCRAM)          ${proxied.toFixed(0)} tps  ratio ${(proxied / bare).toFixed(3)}`);
}

await gw.stop();
fs.rmSync(config.dataDir, { recursive: true, force: true });
await s3.close();
