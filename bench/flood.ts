/**
 * Descriptor-exhaustion flood on each listener (issues 16 and 27): two attacker processes hold
 * idle sockets that each sent one byte of the listener's protocol (reopening any the gateway
 * closes), from two loopback addresses, against the proxy, the serverless HTTP door, the API and
 * the node link in turn. For each, a client from another address is timed before and during its
 * flood (the ratio is to the same client without a flood, in this run), with failures counted.
 * The node link runs as its own listener in this process (it serves only with REDIS_URL).
 * Run: node --import ./bin/load-ts.mjs bench/flood.ts [sockets per listener=5000] [samples=30]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { Agent, fetch } from 'undici';
import { type NodeListenerDeps, startNodeListener } from '../src/nodes/node-listener.ts';
import { askNode, nodeKey } from '../src/nodes/node-link.ts';
import { type Row, printLatencyTable, timed } from './stats.ts';

const sockets = Number(process.argv[2] ?? 5000);
const samples = Number(process.argv[3] ?? 30);
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-'));
fs.chmodSync(dataDir, 0o711);
const gateway = spawn(process.execPath, ['--import', path.join(repo, 'bin', 'load-ts.mjs'), path.join(repo, 'test/abuse/fixtures/gateway.ts')], {
  env: { ...process.env, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_HTTP_PORT: '0', PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: 'bench-admin-key-0123456789' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const info = await new Promise<{ apiUrl: string; proxyPort: number; httpPort: number; endpointId: string; role: string; password: string }>((resolve) => {
  let out = '';
  gateway.stdout!.on('data', (d) => {
    out += d;
    const line = out.split('\n').find((l) => l.includes('"proxyPort"'));
    if (line) resolve(JSON.parse(line));
  });
});
const key = nodeKey(Buffer.alloc(32, 7));
const node = await startNodeListener({ key, log: pino({ level: 'silent' }), limits: { maxConnections: 4000, maxHandshakes: 1000, maxHandshakesPerAddress: 100, timeoutMs: 5000 } } as unknown as NodeListenerDeps, '127.0.0.1', 0);

const insecure = new Agent({ connect: { rejectUnauthorized: false } });
const conn = `postgresql://${info.role}:${info.password}@${info.endpointId}.db.localhost/app`;
const probes: Record<string, { port: number; first: number; probe: () => Promise<unknown> }> = {
  proxy: {
    port: info.proxyPort, first: 0,
    probe: async () => {
      const c = new pg.Client({ host: '127.0.0.1', port: info.proxyPort, user: info.role, password: info.password, database: 'app',
        ssl: { rejectUnauthorized: false }, options: `endpoint=${info.endpointId}`, connectionTimeoutMillis: 30_000 });
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
    },
  },
  'serverless door': {
    port: info.httpPort, first: 0x16,
    probe: async () => {
      const res = await fetch(`https://127.0.0.1:${info.httpPort}/sql`, { method: 'POST', dispatcher: insecure, headers: { 'neon-connection-string': conn }, body: '{"query":"SELECT 1"}' });
      if (res.status !== 200) throw new Error(`sql ${res.status}`);
      await res.text();
    },
  },
  api: {
    port: Number(new URL(info.apiUrl).port), first: 0x47,
    probe: async () => {
      const res = await fetch(`${info.apiUrl}/healthz`);
      if (res.status !== 200) throw new Error(`healthz ${res.status}`);
      await res.text();
    },
  },
  'node link': {
    port: node.port, first: 0x16,
    probe: () => askNode({ id: 'n1', address: `127.0.0.1:${node.port}` }, key, 'bench', { op: 'nope' } as never).catch((err: Error) => {
      if (err.message !== 'unknown node request') throw err;
    }),
  },
};

async function measure(label: string, probe: () => Promise<unknown>): Promise<{ row: Row; failures: number }> {
  const row: Row = { name: label, samples: [] };
  let failures = 0;
  for (let i = 0; i < samples; i++) {
    try {
      row.samples.push(await timed(probe));
    } catch {
      failures++;
    }
  }
  return { row, failures };
}

// An attacker process: keeps `count` sockets open from `from`, each having sent one byte, reopening closed ones.
const attackerSource = `
const net = require('node:net');
const [port, from, count, first] = [Number(process.argv[1]), process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
let open = 0, opened = 0, stop = false;
function one() {
  if (stop) return;
  const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
  s.on('error', () => {});
  s.on('data', () => {});
  s.once('connect', () => { open++; opened++; s.write(Buffer.from([first])); });
  s.once('close', () => { if (s.connecting === false) open--; setTimeout(one, 10); });
}
for (let i = 0; i < count; i++) one();
setInterval(() => process.stdout.write(JSON.stringify({ open, opened }) + '\\n'), 1000);
`;

async function flood(port: number, first: number): Promise<{ stop: () => void; state: () => { open: number; opened: number } }> {
  const last = [{ open: 0, opened: 0 }, { open: 0, opened: 0 }];
  const attackers: ChildProcess[] = ['127.0.0.2', '127.0.0.3'].map((from, i) => {
    const a = spawn(process.execPath, ['-e', attackerSource, String(port), from, String(Math.ceil(sockets / 2)), String(first)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    a.stdout!.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      if (lines.length) last[i] = JSON.parse(lines.at(-1)!);
    });
    return a;
  });
  const state = () => ({ open: last[0]!.open + last[1]!.open, opened: last[0]!.opened + last[1]!.opened });
  const deadline = Date.now() + 60_000;
  while (state().opened < sockets && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  return { stop: () => attackers.forEach((a) => a.kill('SIGKILL')), state };
}

await probes.proxy!.probe(); // wakes the compute
const summary: string[] = [];
for (const [name, { port, first, probe }] of Object.entries(probes)) {
  const before = await measure(`${name}: no flood`, probe);
  const attack = await flood(port, first);
  const openAtStart = attack.state().open;
  const during = await measure(`${name}: ${sockets} sockets flooding`, probe);
  const made = attack.state().opened;
  attack.stop();
  await new Promise((r) => setTimeout(r, 1000));
  printLatencyTable(`${name}: a client from another address during a flood of ${sockets} one-byte sockets from 2 processes`, [before.row, during.row], before.row);
  summary.push(`${name.padEnd(16)} failures before ${before.failures}, during ${during.failures} (of ${samples} each); attacker connections made ${made}, open when measuring began ${openAtStart}`);
}
console.log(`\n${summary.join('\n')}`);
await node.close();
gateway.kill('SIGTERM');
await new Promise((r) => gateway.once('exit', r));
fs.rmSync(dataDir, { recursive: true, force: true });
