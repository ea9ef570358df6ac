import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import t from 'tap';
import { startGateway } from '../main.ts';
import { loadConfig } from '../src/config.ts';
import { nodeTs, postmastersUnder, seededDataDir } from './helpers.ts';

function env(dataDir: string): Record<string, string> {
  return { PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: 'test-admin-key-0123456789' };
}

async function spawnGateway(dataDir: string): Promise<{ child: ChildProcess; pids: number[]; reaper: number }> {
  const [cmd, args] = nodeTs('test/fixtures/gateway-with-computes.ts');
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env(dataDir) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    // The gateway's own log lines (warnings go to stdout too) come before the fixture's line.
    child.stdout!.on('data', (d) => {
      buf += d;
      const found = buf.split('\n').find((l) => l.startsWith('{"pids"'));
      if (found) resolve(found);
    });
    child.once('exit', (code) => reject(new Error(`gateway exited early with ${code}`)));
  });
  return { child, ...(JSON.parse(line) as { pids: number[]; reaper: number }) };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('SIGTERM stops every compute and the catalog: no postgres left', async (t) => {
  const dataDir = seededDataDir();
  const { child, pids } = await spawnGateway(dataDir);
  t.equal(pids.length, 2);
  t.ok(pids.every(alive), 'computes are running');
  const code = await new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  t.equal(code, 0, 'clean exit');
  t.same(postmastersUnder(dataDir), [], 'no postmaster of this data dir is left');
  fs.rmSync(dataDir, { recursive: true, force: true });
});

t.test('after a kill -9 of pgfleet and of its reaper, the next start leaves no orphan', async (t) => {
  const dataDir = seededDataDir();
  const { child, pids, reaper } = await spawnGateway(dataDir);
  // Without its reaper (test/abuse/process-lifecycle covers the reaper), the computes outlive pgfleet.
  process.kill(reaper, 'SIGKILL');
  await new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGKILL');
  });
  t.ok(pids.every(alive), 'the computes outlived their gateway');
  const gateway = await startGateway(loadConfig(env(dataDir)));
  t.ok(pids.every((p) => !alive(p)), 'the restarted gateway stopped the orphaned computes');
  const { rows } = await gateway.core.catalog.query('SELECT 1 AS ok');
  t.same(rows, [{ ok: 1 }], 'the catalog survived and is reachable');
  await gateway.stop();
  t.same(postmastersUnder(dataDir), []);
  fs.rmSync(dataDir, { recursive: true, force: true });
});
