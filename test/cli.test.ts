// The pgfleet command: `pgfleet start` runs the gateway; the other commands drive its API.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { runCli } from '../api/cli.ts';
import { ADMIN_KEY } from './api-client.ts';
import { SPAWNED_GATEWAY_ENV, postmastersUnder, repoRoot, seededDataDir, until } from './helpers.ts';

const execFileAsync = promisify(execFile);
const BIN = path.join(repoRoot, 'bin', 'pgfleet.js');

const dataDir = seededDataDir();
let gateway: ChildProcess;
let apiUrl: string;

t.before(async () => {
  gateway = spawn(process.execPath, [BIN, 'start'], {
    env: { ...process.env, ...SPAWNED_GATEWAY_ENV, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'info', PGFLEET_ADMIN_KEY: ADMIN_KEY },
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
  t.match(created.stdout, /^id: db-[a-z]+-[a-z]+-\d{6}\nuri: /, 'prints the id with the URI');
  const uri = /^uri: (\S+)/m.exec(created.stdout)![1]!;
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
  for (const args of [[], ['--help'], ['start', '--help']]) {
    const r = await pgfleet(args, { PGFLEET_DATA_DIR: path.join(dataDir, 'never-made') });
    t.equal(r.code, 0, `pgfleet ${args.join(' ')}`);
    t.match(r.stdout, /^usage:\n {2}pgfleet start/, `pgfleet ${args.join(' ')} prints usage`);
  }
  const one = await pgfleet(['db', 'create', '-h']);
  t.match(one.stdout, /^usage:\n {2}pgfleet db create --user <user_id>.*\n {6}a new database/, 'pgfleet db create -h explains db create');
  t.notMatch(one.stdout, /pgfleet branches/, 'and only it');
  const group = await pgfleet(['webhooks', '--help']);
  t.match(group.stdout, /pgfleet webhooks create[\s\S]*pgfleet webhooks deliveries/, 'a group lists its commands');
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

t.test('a command for every capability of the API, each with --json', async (t) => {
  // The command's own code in this process (the bin around it is tested above): each run is a call, not a process.
  const run = async (args: string[], key: string) => {
    const out: string[] = [];
    const code = await runCli([...args, '--url', apiUrl, '--key', key], (line) => out.push(line));
    t.equal(code, 0, `pgfleet ${args.join(' ')}`);
    return out.map((l) => `${l}\n`).join('');
  };
  const json = async (args: string[], key: string) => JSON.parse(await run([...args, '--json'], key));
  const lines = async (args: string[], key: string) => (await run([...args, '--json'], key)).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const made = await json(['partners', 'create', '--name', 'every-co'], ADMIN_KEY);
  const key: string = made.api_key;

  const db = await json(['db', 'create', '--user', 'eve', '--suspend-timeout', '120'], key);
  t.match(db, { user_id: 'eve', suspend_timeout_seconds: 120, password: /^[\w-]{32}$/ });
  t.match(await run(['db', 'create', '--user', 'eve', '--field', 'connection_uri'], key), /^postgresql:\/\/app_owner:\S+\n$/, '--field prints one field');
  t.match(await json(['db', 'wake', db.id], key), { id: db.id, state: 'running' });
  t.match(await json(['db', 'suspend', db.id], key), { state: 'suspended' });
  t.match(await json(['db', 'update', db.id, '--name', 'Eve'], key), { name: 'Eve' });
  const role = await json(['roles', 'add', db.id, 'reader'], key);
  t.match(role, { role: 'reader', connection_uri: /^postgresql:\/\/reader:/ });
  t.same(await json(['roles', 'list', db.id], key), { roles: ['app_owner', 'reader'] });
  t.not((await json(['reset-password', db.id, 'reader'], key)).password, role.password);
  t.match(await json(['tokens', 'create', db.id, '--role', 'reader', '--ttl', '120'], key), { role: 'reader', token: /^eyJ/ });
  t.match(await json(['quotas', 'set', db.id, '--storage', '1000000', '--compute-time', 'none'], key), { storage_bytes: 1000000, compute_time_seconds: null });
  t.match(await json(['quotas', 'show', db.id], key), { storage_bytes: 1000000 });
  t.match(await json(['usage', db.id, '--granularity', 'hourly'], key), { database_id: db.id, granularity: 'hourly' });
  t.ok((await lines(['usage'], key)).some((u) => u.database_id === db.id && u.usage.compute_time_seconds > 0), "every database's usage");
  const future = new Date(Date.now() + 86_400_000).toISOString();
  t.equal((await json(['branches', 'create', db.id, '--name', 'preview', '--expires-at', future], key)).expires_at, future);
  const listed = (await run(['branches', 'list', db.id], key)).trim().split('\n');
  t.match(listed[1], new RegExp(`^preview\\tmain\\tsuspended\\t${future}\\tpostgresql://app_owner@`), 'branches list shows each URI');
  t.match(await json(['branches', 'show', db.id, 'preview'], key), { name: 'preview', pooled_connection_uri: /-pooler/ });
  t.match(await json(['branches', 'expire', db.id, 'preview', '--at', 'never'], key), { expires_at: null });
  t.match(await json(['branches', 'rename', db.id, 'preview', '--name', 'pr-1'], key), { name: 'pr-1' });
  const hook = await json(['webhooks', 'create', 'https://hooks.example.com/x', '--events', 'database.*,quota.*'], key);
  t.match(hook, { id: /^wh_/, secret: /^whsec_/, events: ['database.*', 'quota.*'] });
  t.same((await lines(['webhooks', 'list'], key)).map((w) => w.id), [hook.id]);
  await run(['db', 'update', db.id, '--pool-size', '7'], key); // an event for the new webhook
  await until('a delivery attempt', async () => (await lines(['webhooks', 'deliveries', hook.id], key)).some((d) => d.attempts > 0));
  const [delivery] = await lines(['webhooks', 'deliveries', hook.id], key);
  t.match(await json(['webhooks', 'delivery', hook.id, String(delivery.id)], key), { id: delivery.id, attempt_log: [{ attempt: 1 }] });
  t.match(await json(['webhooks', 'delete', hook.id], key), { deleted: true });
  const events = await lines(['events', '--database', db.id], key);
  t.same(events.slice(0, 2).map((e) => e.type), ['database.created', 'database.ready']);
  t.ok(events.some((e) => e.type === 'role.password_reset') && events.some((e) => e.type === 'database.woken'));
  t.ok((await lines(['events', 'types'], key)).some((e) => e.type === 'branch.expired'));
  const [audited] = await lines(['audit', '--action', 'createDatabaseRole'], key);
  t.match(audited, { target: db.id, client: /^pgfleet-cli\//, key_id: /^key-/ });
  t.match(await json(['whoami'], key), { kind: 'partner', partner_id: made.id });
  t.match(await json(['status'], key), { status: 'ready' });

  t.same((await lines(['db', 'list', '--search', 'eve'], ADMIN_KEY)).map((d) => d.partner_id), [made.id, made.id], 'the operator searches every partner');
  t.match(await json(['failures'], ADMIN_KEY), { refused_logins: { by_reason: {} }, failed_wakes: [] });
  t.ok((await json(['fleet'], ADMIN_KEY)).partners >= 3, 'fleet counts');
  t.match(await json(['partners', 'retention', made.id, '--seconds', '3600'], ADMIN_KEY), { id: made.id });
  const rotated = await json(['partners', 'rotate-key', made.id], ADMIN_KEY);
  t.equal(await runCli(['whoami', '--url', apiUrl, '--key', key], () => {}), 1, 'the old key stops working');
  t.match(await json(['whoami'], rotated.api_key), { partner_id: made.id });
  t.match((await json(['keys', 'rotate'], ADMIN_KEY)).kid, /\S/);
  t.match((await pgfleet(['nodes', 'list', '--key', ADMIN_KEY])).stdout, /^\S+\tlive\t\S+\t\d+\/\d+ running\t\d+ databases$/m, 'nodes list: this gateway is the one node');
  const alone = await pgfleet(['nodes', 'drain', JSON.parse((await pgfleet(['nodes', 'list', '--json', '--key', ADMIN_KEY])).stdout.split('\n')[0]).id, '--key', ADMIN_KEY]);
  t.ok(alone.code !== 0 && /no other node|409/.test(alone.stderr), `a lone node cannot be drained: ${alone.stderr.trim()}`);
});

t.test('events --follow prints events as they happen', async (t) => {
  const made = JSON.parse((await pgfleet(['partners', 'create', '--name', 'follow-co', '--key', ADMIN_KEY, '--json'])).stdout);
  const child = spawn(process.execPath, [BIN, 'events', '--follow', '--json', '--since', new Date().toISOString()], {
    env: { ...process.env, PGFLEET_API_URL: apiUrl, PGFLEET_API_KEY: made.api_key }, stdio: ['ignore', 'pipe', 'ignore'],
  });
  t.teardown(() => child.kill());
  let seen = '';
  child.stdout!.on('data', (d) => (seen += d));
  await new Promise((r) => setTimeout(r, 500));
  const db = JSON.parse((await pgfleet(['db', 'create', '--user', 'tail', '--json'], { PGFLEET_API_KEY: made.api_key })).stdout);
  await until('the events of the new database', () => seen.includes(`"database_id":"${db.id}"`) && seen.includes('database.ready'), 20_000);
  t.same(seen.trim().split('\n').map((l) => JSON.parse(l).type), ['database.created', 'database.ready']);
});

t.test('a port in use stops pgfleet start with the variable to change', async (t) => {
  const taken = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => taken.once('listening', r));
  t.teardown(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const dir = seededDataDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = await execFileAsync(process.execPath, [BIN, 'start'], {
    env: { ...process.env, ...SPAWNED_GATEWAY_ENV, PGFLEET_DATA_DIR: dir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: String(port), PGFLEET_ADMIN_KEY: ADMIN_KEY, PGFLEET_LOG_LEVEL: 'warn' },
  }).then(() => ({ code: 0, stderr: '' }), (err: { code: number; stderr: string }) => err);
  t.equal(r.code, 1);
  t.match(r.stderr, new RegExp(`pgfleet: 127\\.0\\.0\\.1:${port} is already in use; set PGFLEET_PROXY_PORT to a free port`));
  t.same(postmastersUnder(dir), [], 'what it had started is stopped');
});

t.test('a core that cannot start stops pgfleet start and the workers forked beside it', async (t) => {
  const dir = seededDataDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [BIN, 'start'], {
    env: { ...process.env, ...SPAWNED_GATEWAY_ENV, PGFLEET_DATA_DIR: dir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_PG_VERSION: '14', PGFLEET_ADMIN_KEY: ADMIN_KEY, PGFLEET_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  t.equal(code, 1);
  t.equal(stderr.trim().split('\n').length, 1, `one line says why, from the primary alone: ${stderr}`);
  t.match(stderr, /^pgfleet: PGFLEET_PG_VERSION: region "local" would run Postgres 14/);
  // Its workers have the data dir in their environment.
  const ofIt = () => fs.readdirSync('/proc').filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`PGFLEET_DATA_DIR=${dir}`);
    } catch {
      return false;
    }
  });
  await until('no process of it left', () => ofIt().length === 0, 10_000);
  t.same(postmastersUnder(dir), [], 'nothing it started is left');
});

t.test('pgfleet start stops cleanly on SIGTERM', async (t) => {
  const code = await new Promise((resolve) => {
    gateway.once('exit', resolve);
    gateway.kill('SIGTERM');
  });
  t.equal(code, 0);
  t.same(postmastersUnder(dataDir), [], 'no Postgres left running');
});
