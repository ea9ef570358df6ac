import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { startGateway } from '../main.ts';
import { routeByDatabase } from '../src/catalog/routes.ts';
import { loadConfig } from '../src/config.ts';
import { launcherPid } from '../src/pg/launcher.ts';
import { nodeTs, postmastersUnder, seededDataDir, until } from './helpers.ts';

function env(dataDir: string): Record<string, string> {
  return { PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: 'test-admin-key-0123456789' };
}

async function spawnGateway(dataDir: string): Promise<{ child: ChildProcess; pids: number[]; launcher: number }> {
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
  return { child, ...(JSON.parse(line) as { pids: number[]; launcher: number }) };
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

t.test('after a kill -9 of pgfleet and of its postmaster launcher, the next start leaves no orphan', async (t) => {
  const dataDir = seededDataDir();
  const { child, pids, launcher } = await spawnGateway(dataDir);
  // Without its launcher (test/abuse/process-lifecycle covers the launcher's reaping), the computes outlive pgfleet.
  process.kill(launcher, 'SIGKILL');
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

t.test('when the postmaster launcher dies alone, computes keep serving, their end is still seen, and the next start has a new launcher', async (t) => {
  const dataDir = seededDataDir();
  const gateway = await startGateway(loadConfig(env(dataDir)));
  const { core } = gateway;
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('p', 'p') ON CONFLICT DO NOTHING`);
  const { database } = await core.databases.create({ partnerId: 'p', userId: 'alice' });
  const route = (await routeByDatabase(core.catalog, database.id))!;
  await core.computes.wake(core.targetFor(route));
  const postmaster = core.local.running.pid(route.branchId)!;
  const launcher = launcherPid()!;
  t.ok(alive(launcher) && alive(postmaster), 'the launcher started the compute');

  process.kill(launcher, 'SIGKILL');
  await until('the launcher to be gone', () => !alive(launcher));
  const lease = await core.computes.acquire(core.targetFor(route));
  const socketDir = path.dirname((lease.address as { socketPath: string }).socketPath);
  const client = new pg.Client({ host: socketDir, user: route.ownerRole, database: route.databaseName });
  await client.connect();
  t.same((await client.query('SELECT 1 AS ok')).rows, [{ ok: 1 }], 'the compute still serves');
  await client.end();
  lease.release();

  // The postmaster is init's child now: its end is found all the same, and the next connection starts it again.
  process.kill(postmaster, 'SIGKILL');
  await until('the gateway to see the compute end', () => core.local.running.pid(route.branchId) === undefined, 10_000);
  await core.computes.wake(core.targetFor(route));
  const restarted = core.local.running.pid(route.branchId)!;
  t.not(restarted, postmaster, 'woken again');
  t.ok(launcherPid() !== undefined && launcherPid() !== launcher && alive(launcherPid()!), 'by a new launcher');

  await gateway.stop();
  t.same(postmastersUnder(dataDir), [], 'a stop leaves no postmaster');
  fs.rmSync(dataDir, { recursive: true, force: true });
});
