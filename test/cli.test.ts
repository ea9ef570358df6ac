// The pgfleet command: `pgfleet start` runs the gateway; the other commands drive its API.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { ADMIN_KEY } from './api-client.ts';
import { postmastersUnder, repoRoot, tmpDataDir } from './helpers.ts';

const execFileAsync = promisify(execFile);
const BIN = path.join(repoRoot, 'bin', 'pgfleet.js');

const dataDir = tmpDataDir();
let gateway: ChildProcess;
let apiUrl: string;

t.before(async () => {
  gateway = spawn(process.execPath, [BIN, 'start'], {
    env: { ...process.env, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'info', PGFLEET_ADMIN_KEY: ADMIN_KEY },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  apiUrl = await new Promise<string>((resolve, reject) => {
    let buf = '';
    gateway.stdout!.on('data', (d) => {
      buf += d;
      const ready = buf.split('\n').map((l) => (l.startsWith('{') ? JSON.parse(l) : {})).find((l) => l.msg === 'pgfleet is ready');
      if (ready) resolve(ready.api);
    });
    gateway.once('exit', (code) => reject(new Error(`pgfleet start exited early with ${code}`)));
  });
});

t.teardown(async () => {
  if (gateway.exitCode === null) {
    await new Promise((resolve) => {
      gateway.once('exit', resolve);
      gateway.kill('SIGTERM');
    });
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function pgfleet(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [BIN, ...args], { env: { ...process.env, PGFLEET_API_URL: apiUrl, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

t.test('partners create, db create/list/delete through the bin', async (t) => {
  const partner = await pgfleet(['partners', 'create', '--name', 'cli-co', '--key', ADMIN_KEY]);
  t.equal(partner.code, 0, partner.stderr);
  const partnerId = /^id: (\S+)$/m.exec(partner.stdout)?.[1];
  const key = /^api_key: (\S+)/m.exec(partner.stdout)?.[1];
  t.ok(partnerId && key, 'prints the id and the key');
  const listed = await pgfleet(['partners', 'list'], { PGFLEET_API_KEY: ADMIN_KEY });
  t.match(listed.stdout, `${partnerId}\tcli-co\t`);

  const asPartner = { PGFLEET_API_KEY: key! };
  const created = await pgfleet(['db', 'create', '--user', 'alice'], asPartner);
  t.equal(created.code, 0, created.stderr);
  const uri = created.stdout.trim();
  t.match(uri, /^postgresql:\/\/app_owner:[A-Za-z0-9_-]{32}@localhost:\d+\/app\?sslmode=require&sslrootcert=\S+&options=endpoint%3D(ep-[a-z]+-[a-z]+-\d{6})$/, 'prints the connection URI');
  const endpoint = /endpoint%3D(ep-[a-z]+-[a-z]+-\d{6})$/.exec(uri)![1];

  const json = await pgfleet(['db', 'create', '--user', 'bob', '--name', 'Bob', '--json'], asPartner);
  const bob = JSON.parse(json.stdout);
  t.match(bob, { user_id: 'bob', name: 'Bob', state: 'suspended' });

  const all = await pgfleet(['db', 'list'], asPartner);
  const rows = all.stdout.trim().split('\n').map((l) => l.split('\t'));
  t.equal(rows.length, 2);
  const alice = rows.find((r) => r[1] === 'alice')!;
  t.equal(alice[4], `${endpoint}.db.localhost`);
  const mine = await pgfleet(['db', 'list', '--user', 'bob'], asPartner);
  t.same(mine.stdout.trim().split('\n').map((l) => l.split('\t')[0]), [bob.id]);

  // Branches and restore of bob's database.
  const branch = await pgfleet(['branches', 'create', bob.id, '--name', 'dev'], asPartner);
  t.equal(branch.code, 0, branch.stderr);
  // The database's URI form, without a password (the database's passwords apply), naming the branch's own endpoint.
  const branchUri = /^postgresql:\/\/app_owner@localhost:\d+\/app\?sslmode=require&sslrootcert=\S+&options=endpoint%3D(ep-[a-z]+-[a-z]+-\d{6})$/.exec(branch.stdout.trim());
  t.ok(branchUri, `prints the branch URI: ${branch.stdout}`);
  t.not(branchUri?.[1], bob.endpoint_id, 'the branch has its own endpoint');
  const branches = (await pgfleet(['branches', 'list', bob.id], asPartner)).stdout.trim().split('\n').map((l) => l.split('\t').slice(0, 2));
  t.same(branches, [['main', '-'], ['dev', 'main']]);
  t.equal((await pgfleet(['branches', 'reset', bob.id, 'dev'], asPartner)).stdout.trim(), 'reset dev');
  const restored = await pgfleet(['restore', bob.id, '--at', new Date().toISOString()], asPartner);
  t.equal(restored.code, 0, restored.stderr);
  t.match(restored.stdout, /^restored main to .*; the state before is branch main_before_\d{8}T\d{9}Z$/m);
  t.equal((await pgfleet(['branches', 'delete', bob.id, 'dev'], asPartner)).stdout.trim(), 'deleted dev');
  const badAt = await pgfleet(['restore', bob.id, '--at', 'noon'], asPartner);
  t.equal(badAt.code, 1);
  t.match(badAt.stderr, /400 bad_request: at: malformed/);

  const deleted = await pgfleet(['db', 'delete', alice[0]!], asPartner);
  t.equal(deleted.code, 0);
  t.equal(deleted.stdout.trim(), `deleted ${alice[0]}`);
  t.same((await pgfleet(['db', 'list'], asPartner)).stdout.trim().split('\n').map((l) => l.split('\t')[0]), [bob.id]);
  const again = await pgfleet(['db', 'delete', alice[0]!], asPartner);
  t.equal(again.code, 1);
  t.match(again.stderr, /404 not_found: database .* not found/);
});

t.test('errors: no key, a bad key, an unknown command, an unreachable API', async (t) => {
  const noKey = await pgfleet(['db', 'list'], { PGFLEET_API_KEY: '' });
  t.equal(noKey.code, 1);
  t.match(noKey.stderr, /no API key/);
  const badKey = await pgfleet(['db', 'list', '--key', 'wrong']);
  t.equal(badKey.code, 1);
  t.match(badKey.stderr, /401 unauthorized/);
  const missing = await pgfleet(['db', 'create'], { PGFLEET_API_KEY: 'whatever' });
  t.equal(missing.code, 1);
  t.match(missing.stderr, /--user/);
  const unknown = await pgfleet(['db', 'explode']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "db explode"/);
  const down = await pgfleet(['db', 'list', '--key', 'k', '--url', 'http://127.0.0.1:1']);
  t.equal(down.code, 1);
  t.match(down.stderr, /cannot reach the API at http:\/\/127\.0\.0\.1:1/);
});

t.test('help and version print and start nothing; db show names the Postgres version; db create --pg-version', async (t) => {
  const { version } = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
  for (const args of [[], ['--help'], ['start', '--help'], ['db', 'create', '-h']]) {
    const r = await pgfleet(args, { PGFLEET_DATA_DIR: path.join(dataDir, 'never-made') });
    t.equal(r.code, 0, `pgfleet ${args.join(' ')}`);
    t.match(r.stdout, /^usage:\n {2}pgfleet start/, `pgfleet ${args.join(' ')} prints usage`);
  }
  t.notOk(fs.existsSync(path.join(dataDir, 'never-made')), 'no gateway was started');
  for (const args of [['--version'], ['start', '--version'], ['db', 'list', '-v']]) {
    t.equal((await pgfleet(args)).stdout.trim(), `pgfleet ${version}`, `pgfleet ${args.join(' ')}`);
  }
  const partner = await pgfleet(['partners', 'create', '--name', 'show-co', '--key', ADMIN_KEY]);
  const key = /^api_key: (\S+)/m.exec(partner.stdout)![1]!;
  const created = await pgfleet(['db', 'create', '--user', 'carol', '--json'], { PGFLEET_API_KEY: key });
  t.equal(created.code, 0, created.stderr);
  const db = JSON.parse(created.stdout);
  const shown = await pgfleet(['db', 'show', db.id], { PGFLEET_API_KEY: key });
  t.equal(shown.code, 0, shown.stderr);
  t.match(shown.stdout, /^pg_version: 17$/m, 'the major of its computes');
  t.match(shown.stdout, /^postgres_version: 17\.\d+$/m, 'the Postgres version of its computes');
  t.match(shown.stdout, new RegExp(`^endpoint_id: ${db.endpoint_id}$`, 'm'));
  const older = await pgfleet(['db', 'create', '--user', 'carol', '--pg-version', '16', '--json'], { PGFLEET_API_KEY: key });
  t.equal(older.code, 0, older.stderr);
  t.equal(JSON.parse(older.stdout).pg_version, 16, '--pg-version chooses the major');
  const unknown = await pgfleet(['db', 'create', '--user', 'carol', '--pg-version', '9'], { PGFLEET_API_KEY: key });
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /400 bad_request: pg_version: region "local" runs Postgres 15, 16, 17, 18; not 9/);
  const notMajor = await pgfleet(['db', 'create', '--user', 'carol', '--pg-version', 'new'], { PGFLEET_API_KEY: key });
  t.equal(notMajor.code, 1);
  t.match(notMajor.stderr, /--pg-version needs a Postgres major/);
});

t.test('a port in use stops pgfleet start with the variable to change', async (t) => {
  const taken = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => taken.once('listening', r));
  t.teardown(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const dir = tmpDataDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = await execFileAsync(process.execPath, [BIN, 'start'], {
    env: { ...process.env, PGFLEET_DATA_DIR: dir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: String(port), PGFLEET_ADMIN_KEY: ADMIN_KEY, PGFLEET_LOG_LEVEL: 'warn' },
  }).then(() => ({ code: 0, stderr: '' }), (err: { code: number; stderr: string }) => err);
  t.equal(r.code, 1);
  t.match(r.stderr, new RegExp(`pgfleet: 127\\.0\\.0\\.1:${port} is already in use; set PGFLEET_PROXY_PORT to a free port`));
  t.same(postmastersUnder(dir), [], 'what it had started is stopped');
});

t.test('pgfleet start stops cleanly on SIGTERM', async (t) => {
  const code = await new Promise((resolve) => {
    gateway.once('exit', resolve);
    gateway.kill('SIGTERM');
  });
  t.equal(code, 0);
  t.same(postmastersUnder(dataDir), [], 'no Postgres left running');
});
