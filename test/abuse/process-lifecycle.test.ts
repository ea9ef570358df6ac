// Process lifecycle faults (issue 16, item 11): `setsid npm start` then signals to the whole
// process group, once or repeated, stop every postgres pgfleet started; after a kill -9 of
// pgfleet, its postmasters stop on their own.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { nodeTs, postmastersUnder, repoRoot, tmpDataDir } from '../helpers.ts';
import { until } from './flood.ts';

const ADMIN_KEY = 'test-admin-key-0123456789';
// One data dir for every run (each leaves nothing running): the catalog and template are made once.
const dataDir = tmpDataDir();
t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));

function gatewayEnv(dataDir: string): NodeJS.ProcessEnv {
  return { ...process.env, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'info', PGFLEET_ADMIN_KEY: ADMIN_KEY };
}

/** `setsid npm start`: npm leads a new session and process group, as under a supervisor. */
async function npmStart(t: Test): Promise<{ group: ChildProcess; apiUrl: string; output: () => string }> {
  const group = spawn('npm', ['start', '--silent'], { cwd: repoRoot, env: gatewayEnv(dataDir), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  group.stdout!.on('data', (d) => (output += d));
  group.stderr!.on('data', (d) => (output += d));
  t.teardown(() => {
    try {
      process.kill(-group.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  });
  await until('pgfleet to be ready', () => output.includes('pgfleet is ready'), 120_000);
  const ready = JSON.parse(output.split('\n').find((l) => l.includes('pgfleet is ready'))!);
  return { group, apiUrl: ready.api, output: () => output };
}

async function wakeOneDatabase(apiUrl: string): Promise<void> {
  const call = async (path: string, key: string, body: unknown) => {
    const res = await fetch(`${apiUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<any>;
  };
  const partner = await call('/v1/partners', ADMIN_KEY, { name: 'acme' });
  // Each run wakes a new database: the others of earlier runs stay asleep.
  const db = await call('/v1/databases', partner.api_key, { user_id: 'alice' });
  await call(`/v1/databases/${db.id}/wake`, partner.api_key, {});
}

const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

for (const [name, signals] of [
  ['SIGTERM to the process group once', ['SIGTERM']],
  ['SIGTERM, SIGTERM and SIGINT to the process group in a row', ['SIGTERM', 'SIGTERM', 'SIGINT']],
] as const) {
  t.test(`${name} stops the catalog and every compute`, async (t) => {
    const { group, apiUrl, output } = await npmStart(t);
    await wakeOneDatabase(apiUrl);
    // (A backend just forked still shows the postmaster's command line for a moment: wait for the count to settle.)
    await until('the catalog and one compute to run', () => postmastersUnder(dataDir).length === 2);
    for (const s of signals) {
      process.kill(-group.pid!, s);
      await new Promise((r) => setTimeout(r, 20));
    }
    await exited(group);
    await until('every postmaster to stop', () => postmastersUnder(dataDir).length === 0, 60_000);
    t.pass('no postmaster of this data dir is left');
    t.match(output(), /"msg":"stopping"/, 'pgfleet ran its own shutdown');
    t.notMatch(output(), /stop failed/);
  });
}

t.test('kill -9 of pgfleet: its postmasters stop on their own', async (t) => {
  const [cmd, args] = nodeTs('test/fixtures/gateway-with-computes.ts');
  const child = spawn(cmd, args, { env: gatewayEnv(dataDir), stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  await until('the computes to run', () => out.includes('"pids"'), 120_000);
  await until('the catalog and two computes to run', () => postmastersUnder(dataDir).length === 3);
  child.kill('SIGKILL');
  await exited(child);
  await until('the orphaned postmasters to stop', () => postmastersUnder(dataDir).length === 0, 60_000);
  t.pass('no postmaster outlived pgfleet for long');
  const log = fs.readFileSync(`${dataDir}/catalog/postgres.log`, 'utf8');
  t.match(log, /received fast shutdown request/, 'a fast shutdown (nothing lost), not a crash');
});
