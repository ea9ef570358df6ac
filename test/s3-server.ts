/**
 * A real S3-compatible server for tests and benches: s3rver (npm), run as its own process on
 * loopback and reached through the AWS SDK exactly as AWS would be. It keeps its objects in a
 * directory, so it can be stopped (a store outage) and started again on the same port with them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot, tmpDataDir, until } from './helpers.ts';

export const S3_BUCKET = 'pgfleet';

export interface S3Server {
  port: number;
  dir: string;
  /** PGFLEET_STORAGE_URL of a prefix in the bucket (credentials in the URL, path-style, its endpoint). */
  url(prefix: string): string;
  /** Starts it (again) on the same port, with the objects it held. */
  start(): Promise<void>;
  /** Stops it: every request fails (connection refused) until start(). */
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT: requests hang (a slow store) until resumed. */
  pause(): void;
  resume(): void;
  /** Bytes of every object under a prefix, as the server stores them. */
  bytesUnder(prefix: string): number;
  close(): Promise<void>;
}

export async function startS3(): Promise<S3Server> {
  const dir = tmpDataDir('s3');
  let port = 0;
  let child: ChildProcess | undefined;
  const server: S3Server = {
    get port() {
      return port;
    },
    dir,
    url: (prefix) => `s3://S3RVER:S3RVER@${S3_BUCKET}/${prefix}?endpoint=http://127.0.0.1:${port}&region=us-east-1`,
    async start() {
      let out = '';
      child = spawn(process.execPath, [path.join(repoRoot, 'node_modules', 's3rver', 'bin', 's3rver.js'),
        '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', S3_BUCKET], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (out += d));
      const c = child;
      await until('s3rver to listen', () => {
        if (c.exitCode !== null) throw new Error(`s3rver exited: ${out}`);
        const m = /listening on [\d.]+:(\d+)/.exec(out);
        if (m) port = Number(m[1]);
        return m !== null;
      }, 30_000);
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      c.kill('SIGCONT');
      await new Promise((r) => {
        c.once('exit', r);
        c.kill('SIGKILL');
      });
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    bytesUnder(prefix) {
      const root = path.join(dir, S3_BUCKET, prefix);
      let total = 0;
      const walk = (d: string) => {
        if (!fs.existsSync(d)) return;
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          if (e.isDirectory()) walk(path.join(d, e.name));
          else if (e.name.endsWith('._S3rver_object')) total += fs.statSync(path.join(d, e.name)).size;
        }
      };
      walk(root);
      return total;
    },
    async close() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
