/**
 * One tenant's largest allowed `POST /sql` batches against another tenant's latency (issue 27,
 * finding 5): tenant B runs `SELECT 1` one after another on a kept TCP connection, first alone
 * (the baseline, in this run), then while tenant A sends, back to back, batches of
 * PGFLEET_SQL_MAX_STATEMENTS statements with a body of nearly 10 MiB, and batches whose answer is
 * nearly 10 MiB. Prints B's p50/p99 both ways, the p99 difference (goal ≤ 50 ms) and the ratio.
 * The gateway runs in its own process.
 * Run: node --import ./bin/load-ts.mjs bench/sql-batch.ts [seconds per phase=15]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Agent, fetch } from 'undici';
import { type Row, percentile, printLatencyTable, timed } from './stats.ts';

const seconds = Number(process.argv[2] ?? 15);
const STATEMENTS = 1000;
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const gateway = spawn(process.execPath, ['--import', path.join(repo, 'bin', 'load-ts.mjs'), path.join(repo, 'test/abuse/fixtures/gateway.ts')], {
  env: { ...process.env, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_HTTP_PORT: '0', PGFLEET_LOG_LEVEL: 'warn',
    PGFLEET_ADMIN_KEY: 'bench-admin-key-0123456789', PGFLEET_SQL_MAX_STATEMENTS: String(STATEMENTS) },
  stdio: ['ignore', 'pipe', 'inherit'],
});
type Db = { endpointId: string; role: string; password: string };
const info = await new Promise<Db & { proxyPort: number; httpPort: number; other: Db }>((resolve) => {
  let out = '';
  gateway.stdout!.on('data', (d) => {
    out += d;
    const line = out.split('\n').find((l) => l.includes('"proxyPort"'));
    if (line) resolve(JSON.parse(line));
  });
});

const b = new pg.Client({ host: '127.0.0.1', port: info.proxyPort, user: info.other.role, password: info.other.password, database: 'app',
  ssl: { rejectUnauthorized: false }, options: `endpoint=${info.other.endpointId}` });
await b.connect();
async function probe(label: string): Promise<Row> {
  const row: Row = { name: label, samples: [] };
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) row.samples.push(await timed(() => b.query('SELECT 1')));
  return row;
}

const insecure = new Agent({ connect: { rejectUnauthorized: false } });
const bigBody = JSON.stringify({ queries: Array.from({ length: STATEMENTS }, (_, i) => ({ query: 'SELECT length($1) AS n', params: [String(i).repeat(10_000 / String(i).length | 0).padEnd(10_000, 'x')] })) });
const bigAnswer = JSON.stringify({ queries: Array.from({ length: STATEMENTS }, () => ({ query: `SELECT repeat('x', 9000) AS s`, params: [] })) });
let batches = 0;
let failures = 0;
let stop = false;
async function tenantA(): Promise<void> {
  for (let i = 0; !stop; i++) {
    const res = await fetch(`https://127.0.0.1:${info.httpPort}/sql`, {
      method: 'POST', dispatcher: insecure, body: i % 2 ? bigAnswer : bigBody,
      headers: { 'neon-connection-string': `postgresql://${info.role}:${info.password}@${info.endpointId}.db.localhost/app`, 'content-type': 'application/json' },
    }).catch(() => undefined);
    if (res?.status === 200) batches++;
    else failures++;
    await res?.arrayBuffer();
  }
}

await b.query('SELECT 1');
const alone = await probe('B alone');
const load = tenantA();
const loaded = await probe(`B while A sends ${STATEMENTS}-statement batches`);
stop = true;
await load;
printLatencyTable(`tenant B's SELECT 1 over TCP (${seconds} s each; body ${(bigBody.length / 1048576).toFixed(1)} MiB / answer ~${(STATEMENTS * 9000 / 1048576).toFixed(1)} MiB)`, [alone, loaded], alone);
const diff = percentile(loaded.samples, 99) - percentile(alone.samples, 99);
console.log(`\nA's batches answered: ${batches}, failed: ${failures}; load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`);
console.log(`B's p99 while A runs minus alone: ${diff.toFixed(1)} ms (goal ≤ 50 ms: ${diff <= 50 ? 'met' : 'NOT met'}); p99 ratio ${(percentile(loaded.samples, 99) / percentile(alone.samples, 99)).toFixed(2)}`);
await b.end();
gateway.kill('SIGTERM');
await new Promise((r) => gateway.once('exit', r));
fs.rmSync(dataDir, { recursive: true, force: true });
