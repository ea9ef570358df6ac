/**
 * Provisioning speed: POST /v1/databases through the API, 8 at a time, beside CREATE DATABASE
 * on one shared Postgres (what a "database per user on one server" does), in the same run.
 * Prints p50/p99 latency and creates per second of each, and their ratios. Goals: API p99 ≤ 25 ms, ≥ 500 creates/s.
 * Run: node --import ./bin/load-ts.mjs bench/provision.ts [creates=2000] [baseline creates=200] (each CREATE DATABASE writes ~8 MB)
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startGateway } from '../main.ts';
import { loadConfig } from '../src/config.ts';
import { PgInstalls } from '../src/pg/install.ts';
import { makeOwnedDir, resolveComputeUser } from '../src/pg/os-user.ts';
import { ADMIN_ROLE, PostgresServer, SOCKET_PORT, initCluster } from '../src/pg/server.ts';
import type { LoadSpec } from './http-load.ts';
import { percentile, printLatencyTable, timed } from './stats.ts';

const creates = Number(process.argv[2] ?? 2000);
const baselineCreates = Number(process.argv[3] ?? 200);
const CONCURRENCY = 8;
const ADMIN_KEY = 'bench-admin-key-0123456789';

/** Runs fn n times, `CONCURRENCY` at a time, in this thread; returns each call's latency and the wall time. */
async function run(n: number, fn: (i: number) => Promise<void>): Promise<{ samples: number[]; seconds: number }> {
  const samples: number[] = [];
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < n) {
      const i = next++;
      samples.push(await timed(() => fn(i)));
    }
  }));
  return { samples, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** Runs the HTTP load from another process: the client's event loop is not the gateway's. */
function load(spec: LoadSpec): Promise<{ samples: number[]; seconds: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./http-load.ts', import.meta.url)), { execArgv: ['--import', fileURLToPath(new URL('../bin/load-ts.mjs', import.meta.url))] });
    child.once('message', (m) => resolve(m as { samples: number[]; seconds: number }));
    child.once('error', reject);
    child.once('exit', (code) => code && reject(new Error(`the load client exited with ${code}`)));
    child.send(spec);
  });
}

function tmpDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pgfleet-bench-${label}-`));
  fs.chmodSync(dir, 0o711);
  return dir;
}

async function benchApi(): Promise<{ samples: number[]; seconds: number }> {
  const dataDir = tmpDir('api');
  const gateway = await startGateway(loadConfig({
    PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn',
    PGFLEET_ADMIN_KEY: ADMIN_KEY, PGFLEET_API_RATE_LIMIT: '10000000',
  }));
  try {
    const post = async (path: string, key: string, body: unknown) => {
      const res = await fetch(`${gateway.apiUrl}${path}`, {
        method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
      });
      const answer = await res.json();
      if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(answer)}`);
      return answer;
    };
    const { api_key: key } = await post('/v1/partners', ADMIN_KEY, { name: 'bench' });
    const url = `${gateway.apiUrl}/v1/databases`;
    await load({ url, key, concurrency: CONCURRENCY, bodies: Array.from({ length: 50 }, (_, i) => ({ user_id: `warmup-${i}` })) }); // untimed
    return await load({ url, key, concurrency: CONCURRENCY, bodies: Array.from({ length: creates }, (_, i) => ({ user_id: `user-${i}` })) });
  } finally {
    await gateway.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function benchCreateDatabase(): Promise<{ samples: number[]; seconds: number }> {
  const dataDir = tmpDir('pg');
  const config = loadConfig({ PGFLEET_DATA_DIR: dataDir });
  const user = resolveComputeUser(config.computeUser);
  const install = PgInstalls.discover(config.pgBin, user, dataDir).get();
  const pgdata = path.join(dataDir, 'shared', 'pgdata');
  await initCluster(install, user, pgdata);
  const socketDir = path.join(dataDir, 'run');
  makeOwnedDir(socketDir, user);
  const server = new PostgresServer({
    install, user, pgdata, socketDir, logFile: path.join(dataDir, 'shared', 'postgres.log'),
    settings: { shared_buffers: '128MB', max_connections: 50 }, startTimeoutMs: 60_000,
  });
  await server.start();
  // Connected to `postgres`, never to template1: CREATE DATABASE copies template1 and fails with
  // 55006 while anyone else is connected to it.
  const pool = new pg.Pool({ host: socketDir, port: SOCKET_PORT, user: ADMIN_ROLE, database: 'postgres', max: CONCURRENCY });
  pool.on('error', () => {}); // idle connections end with the server
  try {
    await run(10, (i) => pool.query(`CREATE DATABASE warmup_${i}`).then(() => {}));
    return await run(baselineCreates, (i) => pool.query(`CREATE DATABASE user_${i}`).then(() => {}));
  } finally {
    await pool.end();
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const api = await benchApi();
// A baseline that fails costs its rows, never pgfleet's figures.
const base = await benchCreateDatabase().catch((err: Error) => {
  console.error(`baseline CREATE DATABASE failed: ${err.message}`);
  return undefined;
});
const apiRow = { name: `POST /v1/databases (${creates}, ${CONCURRENCY} at a time)`, samples: api.samples };
const baseRow = base && { name: `CREATE DATABASE, shared Postgres (${baselineCreates})`, samples: base.samples };
printLatencyTable('Provisioning a database', baseRow ? [apiRow, baseRow] : [apiRow], baseRow ?? apiRow);
const apiRate = creates / api.seconds;
const p99 = percentile(api.samples, 99);
if (base) {
  const baseRate = baselineCreates / base.seconds;
  console.log(`creates per second: API ${apiRate.toFixed(0)}, CREATE DATABASE ${baseRate.toFixed(0)} (ratio ${(apiRate / baseRate).toFixed(2)})`);
  console.log(`p99 ratio (API / CREATE DATABASE): ${(p99 / percentile(base.samples, 99)).toFixed(2)}`);
} else {
  console.log(`creates per second: API ${apiRate.toFixed(0)} (no baseline: it failed, see above)`);
}
console.log(`goal p99 ≤ 25 ms: ${p99 <= 25 ? 'met' : 'NOT met'} (${p99.toFixed(1)} ms); goal ≥ 500 creates/s: ${apiRate >= 500 ? 'met' : 'NOT met'} (${apiRate.toFixed(0)})`);
