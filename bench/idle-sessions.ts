/**
 * Memory per idle client connection, the way the proxy and pooler benches measure it: N clients
 * held open by a separate process, the gateway's memory after a full collection (V8 heap +
 * external memory, and RSS) before and after, beside a baseline process's RSS.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';

// A full collection before each reading, with or without --expose-gc on the command line.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

export interface ClientTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  servername?: string;
  options?: string;
}

/** A process's resident memory in bytes. */
export function rssOf(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
}

/** This process's memory after a full collection: JS heap + external (array buffers), and RSS. */
export function gatewayMemory(): { heap: number; rss: number } {
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed + m.external, rss: m.rss };
}

/**
 * Opens `n` idle client connections from a child process (node-postgres, TLS); resolves once all
 * are open, and with `query`, each has run one query (so a session pooler has given it a server).
 */
export async function holdIdleClients(target: ClientTarget, n: number, opts: { query?: boolean } = {}): Promise<ChildProcess> {
  const script = `
    import pg from 'pg';
    const c = JSON.parse(process.argv[1]);
    const clients = [];
    for (let i = 0; i < ${n}; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, ${n} - i) }, async () => {
        const client = new pg.Client({ host: c.host, port: c.port, user: c.user, password: c.password, database: c.database, options: c.options,
          ssl: { rejectUnauthorized: false, servername: c.servername } });
        client.on('error', () => {});
        await client.connect();
        ${opts.query ? "await client.query('SELECT 1');" : ''}
        clients.push(client);
      }));
    }
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1 << 30);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(target)], { stdio: ['ignore', 'pipe', 'inherit'], cwd: process.cwd() });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`idle client holder exited with ${code}`)));
  });
  return child;
}

/** Kills the holder and waits for it to be gone. */
export async function release(holder: ChildProcess): Promise<void> {
  if (holder.exitCode !== null || holder.signalCode !== null) return;
  await new Promise((resolve) => {
    holder.once('exit', resolve);
    holder.kill('SIGKILL');
  });
}
