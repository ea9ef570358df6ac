/**
 * `pgfleet start` as its own process for benches that measure it as deployed (workers): start it,
 * give it one database, find its worker processes, read their CPU time.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { startProcess } from '../test/helpers.ts';

const ADMIN = 'bench-admin-key-0123456789';

export interface GatewayProcess {
  child: ChildProcess;
  proxyPort: number;
  /** pgbench's conninfo for the database (password in `password`). */
  conninfo: string;
  password: string;
  stop(): Promise<void>;
}

export async function startGatewayProcess(dataDir: string, env: Record<string, string>): Promise<GatewayProcess> {
  const gw = await startProcess({
    PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_ADMIN_KEY: ADMIN, PGFLEET_LOG_LEVEL: 'info',
    PGFLEET_API_RATE_LIMIT: '1000000', PGFLEET_COMPUTE_MAX_CONNECTIONS: '600', ...env,
  });
  const post = async (p: string, key: string, body: unknown) => (await fetch(`${gw.api}${p}`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  })).json() as Promise<any>;
  const { api_key: key } = await post('/v1/partners', ADMIN, { name: 'bench' });
  const db = await post('/v1/databases', key, { user_id: 'bench', suspend_timeout_seconds: 0 });
  return {
    child: gw.child,
    proxyPort: gw.proxyPort,
    conninfo: `host=127.0.0.1 port=${gw.proxyPort} user=${db.role} dbname=${db.database} sslmode=require options=endpoint=${db.endpoint_id}`,
    password: db.password,
    stop: async () => {
      gw.child.kill('SIGTERM');
      await new Promise((r) => gw.child.once('exit', r));
    },
  };
}

/** The proxy worker processes of a `pgfleet start` (its children running bin/pgfleet.js; not the postmaster launcher). */
export function workerPids(primary: number): number[] {
  return execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(primary)], { encoding: 'utf8' })
    .split('\n').filter((l) => l.includes('pgfleet.js start')).map((l) => Number(l.trim().split(/\s+/)[0]));
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
