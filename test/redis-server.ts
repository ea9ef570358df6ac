/** A real redis-server on a free loopback port, for tests and benches. */
import { type ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './proxy-helpers.ts';

export interface RedisServer {
  port: number;
  url: string;
  /** Starts it (again, empty: no persistence) on the same port. */
  start(): Promise<void>;
  /** kill -9. */
  kill(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
      const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      try {
        for (let i = 0; ; i++) {
          try {
            await probe.connect();
            await probe.ping();
            return;
          } catch (err) {
            if (i > 200) throw err;
            probe.disconnect();
            await new Promise((r) => setTimeout(r, 25));
          }
        }
      } finally {
        probe.disconnect();
      }
    },
    async kill() {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      await new Promise((resolve) => {
        c.once('exit', resolve);
        c.kill('SIGKILL');
      });
    },
  };
  await server.start();
  return server;
}
