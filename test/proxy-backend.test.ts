import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { sessionsKey } from '../src/metering/usage-tracker.ts';
import { SOCKET_PORT, PostgresServer, initCluster } from '../src/pg/server.ts';
import type { BranchRef, ComputeAddress, Provider } from '../src/providers/provider.ts';
import { startProxy } from '../proxy/server.ts';
import { loadTlsIdentity } from '../proxy/tls-certs.ts';
import { tmpDataDir } from './helpers.ts';
import { freePort, psql, psqlError, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture();
t.teardown(() => f.stop());
const a = await f.createDatabase();

async function activePids(db = a): Promise<number[]> {
  const out = await psql(f.conninfo(db), `SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`);
  return out ? out.split('\n').map(Number) : [];
}

t.test('client gone: the compute backend process ends', async (t) => {
  const c = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
  await c.connect();
  const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  t.ok((await activePids()).includes(pid));
  // Vanish without a Terminate message.
  (c as any).connection.stream.destroy();
  c.on('error', () => {});
  for (let i = 0; i < 100 && (await activePids()).includes(pid); i++) await new Promise((r) => setTimeout(r, 50));
  t.notOk((await activePids()).includes(pid), 'its backend is gone');
});

t.test('compute vanished (a crash): the client gets one FATAL and a close', async (t) => {
  const c = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
  await c.connect();
  const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  const errors: Error[] = [];
  const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
  c.on('error', (err) => errors.push(err));
  process.kill(pid, 'SIGKILL');
  await ended;
  // Postgres itself would send nothing: pgfleet adds one FATAL, between two messages.
  t.match(errors[0], { severity: 'FATAL', code: '57P02', message: 'terminating connection because the compute stopped unexpectedly' });
  t.equal(errors.filter((e) => (e as { severity?: string }).severity === 'FATAL').length, 1, 'once');
  await t.rejects(c.query('SELECT 1'), 'the client connection was closed');
  // The compute recovers from the crash and serves new sessions.
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    ok = await psql(f.conninfo(a), 'SELECT 1').then(() => true, () => false);
    if (!ok) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(ok);
});

t.test('an unknown database name comes back as the compute says it', async (t) => {
  t.match(await psqlError(f.conninfo(a).replace('dbname=app', 'dbname=nosuch')), 'database "nosuch" does not exist');
});

// ---- a remote compute over TCP: TLS verified against a given CA, then SCRAM ----

t.test('a tcp compute: TLS with servername + CA, SCRAM with the stored password, cancel over TLS', async (t) => {
  const { core } = f;
  const dir = tmpDataDir('pgfleet-remote');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const identity = await loadTlsIdentity({ dataDir: dir, domain: 'compute.test' });
  const pgdata = path.join(dir, 'cluster', 'pgdata');
  await initCluster(core.installs.get(), core.user, pgdata);
  const own = (file: string, text: string) => {
    fs.writeFileSync(file, text, { mode: 0o600 });
    if (core.user.switchUser) fs.chownSync(file, core.user.uid, core.user.gid);
  };
  own(path.join(pgdata, 'server.crt'), identity.cert);
  own(path.join(pgdata, 'server.key'), fs.readFileSync(path.join(dir, 'tls', 'server.key'), 'utf8'));
  own(path.join(pgdata, 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n');
  const port = await freePort();
  const socketDir = path.join(dir, 'sock');
  const server = new PostgresServer({
    install: core.installs.get(), user: core.user, pgdata, socketDir, logFile: path.join(dir, 'cluster', 'log'),
    settings: { listen_addresses: '127.0.0.1', port, ssl: 'on' }, startTimeoutMs: 30_000,
  });
  await server.start();
  t.teardown(() => server.stop());
  const computePassword = 'remote-secret-pw';
  const admin = new pg.Client({ host: socketDir, port, user: 'pgfleet_admin', database: 'template1' });
  await admin.connect();
  await admin.query(`CREATE ROLE ${a.role} LOGIN PASSWORD '${computePassword}'`);
  await admin.query(`CREATE DATABASE app OWNER ${a.role}`);
  await admin.end();
  t.not(SOCKET_PORT, port);

  const address: ComputeAddress = {
    kind: 'tcp', host: '127.0.0.1', port, servername: 'compute.test', ca: fs.readFileSync(identity.caPath!, 'utf8'),
    passwords: new Map([[a.role, computePassword]]),
  };
  let served = 0;
  const remote: Provider = {
    name: 'remote-test',
    pgVersions: [17],
    postgresVersion: () => '17',
    rootDeletesAll: false,
    createsAtFirstStart: true,
    create: async () => ({}),
    updateSettings: async () => {},
    start: async (_ref: BranchRef) => { served++; return address; },
    stop: async () => {},
    delete: async () => {},
    syncRoles: async () => ({}),
    resetPassword: async () => ({}),
    usage: async () => [],
    meters: [],
    sample: async () => ({}),
    status: () => 'running',
    shutdown: async () => {},
  };
  const original = core.targetFor;
  const originalAcquire = core.acquire;
  core.targetFor = (route) => ({ ...original(route), provider: remote });
  // core.acquire reaches the gateway's own targetFor; route it through the replaced one.
  core.acquire = (route) => core.computes.acquire(core.targetFor(route));
  t.teardown(() => {
    core.targetFor = original;
    core.acquire = originalAcquire;
  });
  await core.computes.suspend(a.database.branchId);

  const out = await psql(f.conninfo(a), `SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`);
  t.equal(out, `${a.role} true`, 'the proxy reached the remote compute over TLS as the role');
  t.ok(served >= 1);

  const c = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
  await c.connect();
  const sleeping = c.query('SELECT pg_sleep(60)');
  await new Promise((r) => setTimeout(r, 500));
  (new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') }) as any).cancel(c, (c as any).activeQuery);
  await t.rejects(sleeping, /canceling statement due to user request/);
  await c.end();

  // A compute whose certificate does not verify is not talked to.
  await core.computes.suspend(a.database.branchId);
  address.ca = undefined;
  const refused = await psqlError(f.conninfo(a));
  t.match(refused, /could not connect to the compute/);
  address.ca = fs.readFileSync(identity.caPath!, 'utf8');
  await core.computes.suspend(a.database.branchId);
});

t.test('closing a listener ends its open sessions and waits for their ends: leases and connection counts are given back', async (t) => {
  const second = await startProxy(f.core);
  const clients = await Promise.all([1, 2, 3].map(async () => {
    const c = new pg.Client({ connectionString: a.uriNoSni.replace(`:${f.proxy.port}/`, `:${second.port}/`).replace('sslmode=require', 'sslmode=no-verify') });
    c.on('error', () => {});
    await c.connect();
    await c.query('SELECT 1');
    return c;
  }));
  const branchId = a.database.branchId;
  t.equal(f.core.computes.info(branchId).connections, 3, 'three sessions hold the compute');
  t.equal(await f.core.coord.total(sessionsKey(a.database.id)), 3, 'and count against the database');
  await second.close();
  t.equal(second.sessions.size, 0, 'once close resolves, no session is left');
  t.equal(f.core.computes.info(branchId).connections, 0, 'their leases are released');
  t.equal(await f.core.coord.total(sessionsKey(a.database.id)), 0, 'and their counts ended');
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
});
