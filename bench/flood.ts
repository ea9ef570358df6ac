/**
 * Descriptor-exhaustion flood (issue 16): two attacker processes hold FLOOD idle sockets that
 * each sent one byte (reopening any the gateway closes), from two loopback addresses. Measures
 * a legitimate client's connect-to-first-row through the proxy and GET /healthz before and
 * during the flood, in one run, and counts failures.
 * Run: npx tsx bench/flood.ts [sockets=21000] [samples=30]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type Row, printLatencyTable, timed } from './stats.ts';

const sockets = Number(process.argv[2] ?? 21_000);
const samples = Number(process.argv[3] ?? 30);
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const gateway = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'test/abuse/fixtures/gateway.ts')], {
  env: { ...process.env, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: 'bench-admin-key-0123456789' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const info = await new Promise<{ apiUrl: string; proxyPort: number; endpointId: string; role: string; password: string }>((resolve) => {
  let out = '';
  gateway.stdout!.on('data', (d) => {
    out += d;
    const line = out.split('\n').find((l) => l.includes('"proxyPort"'));
    if (line) resolve(JSON.parse(line));
  });
});

async function connect(): Promise<void> {
  const c = new pg.Client({ host: '127.0.0.1', port: info.proxyPort, user: info.role, password: info.password, database: 'app',
    ssl: { rejectUnauthorized: false }, options: `endpoint=${info.endpointId}`, connectionTimeoutMillis: 30_000 });
  await c.connect();
  await c.query('SELECT 1');
  await c.end();
}
const health = async () => {
  const res = await fetch(`${info.apiUrl}/healthz`);
  if (res.status !== 200) throw new Error(`healthz ${res.status}`);
};

async function measure(label: string): Promise<{ rows: Row[]; failures: number }> {
  const rows: Row[] = [{ name: `${label}: psql-like connect + SELECT 1`, samples: [] }, { name: `${label}: GET /healthz`, samples: [] }];
  let failures = 0;
  for (let i = 0; i < samples; i++) {
    for (const [row, fn] of [[rows[0]!, connect], [rows[1]!, health]] as const) {
      try {
        row.samples.push(await timed(fn));
      } catch {
        failures++;
      }
    }
  }
  return { rows, failures };
}

// An attacker process: keeps `count` one-byte sockets open from `from`, reopening closed ones.
const attackerSource = `
const net = require('node:net');
const [port, from, count] = [Number(process.argv[1]), process.argv[2], Number(process.argv[3])];
let open = 0, opened = 0;
function one() {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
  s.on('error', () => {});
  s.once('connect', () => { open++; opened++; s.write(Buffer.from([0])); });
  s.once('close', (hadConnect) => { if (s.connecting === false) open--; setTimeout(one, 10); });
}
for (let i = 0; i < count; i++) one();
setInterval(() => process.stdout.write(JSON.stringify({ open, opened }) + '\\n'), 1000);
`;

await connect(); // wakes the compute
const before = await measure('idle');
const attackers: ChildProcess[] = ['127.0.0.2', '127.0.0.3'].map((from) =>
  spawn(process.execPath, ['-e', attackerSource, String(info.proxyPort), from, String(Math.ceil(sockets / 2))], { stdio: ['ignore', 'pipe', 'inherit'] }));
const last: { open: number; opened: number }[] = [{ open: 0, opened: 0 }, { open: 0, opened: 0 }];
attackers.forEach((a, i) => {
  let buf = '';
  a.stdout!.on('data', (d) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop()!;
    if (lines.length) last[i] = JSON.parse(lines.at(-1)!);
  });
});
// Let the flood build up: every attacker socket connected at least once (or 60 s).
const deadline = Date.now() + 60_000;
while (last.reduce((n, l) => n + l.opened, 0) < sockets && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
const openAtStart = last.reduce((n, l) => n + l.open, 0);
const during = await measure(`${sockets} sockets flooding`);
const opened = last.reduce((n, l) => n + l.opened, 0);
for (const a of attackers) a.kill('SIGKILL');

const title = (what: string) => `${what} during a flood of ${sockets} idle one-byte sockets from 2 processes (ratio: to the same without a flood)`;
printLatencyTable(title('A client from another address'), [before.rows[0]!, during.rows[0]!], before.rows[0]!);
printLatencyTable(title('The API'), [before.rows[1]!, during.rows[1]!], before.rows[1]!);
console.log(`\nfailures: before ${before.failures}, during ${during.failures} (of ${samples * 2} each); attacker connections made: ${opened}, open when measuring began: ${openAtStart}`);
gateway.kill('SIGTERM');
await new Promise((r) => gateway.once('exit', r));
fs.rmSync(dataDir, { recursive: true, force: true });
