// kill -9 of pgfleet between Neon's answer and the catalog write: a create is finished by the next
// start (the project adopted, not made twice), and a delete is finished too.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import t from 'tap';
import { startGateway } from '../main.ts';
import { loadConfig } from '../src/config.ts';
import { ADMIN_KEY } from './api-client.ts';
import { FakeNeon } from './fake-neon/fake-neon.ts';
import { neonRegionEnv } from './fake-neon/pgfleet-side.ts';
import { SPAWNED_GATEWAY_ENV, nodeTs, seededDataDir } from './helpers.ts';
import { freePort, psql } from './proxy-helpers.ts';

const fake = await FakeNeon.start();
t.teardown(() => fake.close());
const dataDir = seededDataDir();
t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
const env = (apiPort: number, proxyPort = 0) => ({
  ...neonRegionEnv(fake), PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: String(apiPort), PGFLEET_PROXY_PORT: String(proxyPort),
  PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: ADMIN_KEY,
});

const call = async (url: string, method: string, path: string, key: string, body?: unknown) => {
  const res = await fetch(`${url}${path}`, {
    method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
};

/** pgfleet in a child process (so that it can be killed -9), with its API and proxy on ports of ours. */
async function spawnPgfleet(): Promise<{ child: ChildProcess; url: string; proxyPort: number; exited: Promise<unknown> }> {
  const port = await freePort();
  const proxyPort = await freePort();
  const [cmd, args] = nodeTs('main.ts');
  const child = spawn(cmd, args, { env: { ...process.env, ...SPAWNED_GATEWAY_ENV, ...env(port, proxyPort) }, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error('pgfleet exited at start');
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return { child, url, proxyPort, exited };
    if (i > 600) throw new Error('pgfleet did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Kills pgfleet the moment the fake has answered `operation`: before pgfleet can act on the answer. */
function killAfterAnswer(child: ChildProcess, operation: string): void {
  fake.onAnswered = (op, status) => {
    if (op === operation && status < 300) {
      child.kill('SIGKILL');
      fake.onAnswered = undefined;
    }
  };
}

t.test('kill -9 after Neon answered: the next start finishes the create (adopting the project) and the delete', async (t) => {
  let pgfleet = await spawnPgfleet();
  const partner = (await call(pgfleet.url, 'POST', '/v1/partners', ADMIN_KEY, { name: 'acme' })).body;
  const doomed = (await call(pgfleet.url, 'POST', '/v1/databases', partner.api_key, { user_id: 'bob', region: 'aws-us-east-2' })).body;
  const doomedProject = [...fake.projects.values()].find((p) => p.name === doomed.id)!;
  t.ok(doomedProject, 'a database to delete');

  killAfterAnswer(pgfleet.child, 'deleteProject');
  await t.rejects(call(pgfleet.url, 'DELETE', `/v1/databases/${doomed.id}`, partner.api_key), 'pgfleet died during the delete');
  await pgfleet.exited;
  t.notOk(fake.projects.has(doomedProject.id), 'Neon deleted the project; pgfleet never learnt it');

  pgfleet = await spawnPgfleet();
  killAfterAnswer(pgfleet.child, 'createProject');
  await t.rejects(call(pgfleet.url, 'POST', '/v1/databases', partner.api_key, { user_id: 'alice', region: 'aws-us-east-2' }), 'pgfleet died during the create');
  await pgfleet.exited;
  t.equal(fake.projects.size, 1, 'Neon made the project; pgfleet never kept it');
  const [made] = [...fake.projects.values()];

  const gateway = await startGateway(loadConfig(env(0)));
  t.teardown(() => gateway.stop());
  const catalog = gateway.core.catalog;
  const row = async () => (await catalog.query(`SELECT id, status, provider_state FROM databases WHERE user_id = 'alice'`)).rows[0];
  for (let i = 0; (await row())?.status !== 'ready'; i++) {
    if (i > 600) throw new Error('the create was not finished');
    await new Promise((r) => setTimeout(r, 100));
  }
  const db = await row();
  t.equal(db.id, made!.name, 'the unfinished database is the one the project was made for');
  t.equal(db.provider_state.neon.projectId, made!.id, 'the project was adopted');
  t.equal(fake.projects.size, 1, 'no second project');
  t.equal(fake.callsOf('createProject'), 2, 'Neon was never asked for it again');

  // The password given at create was lost with the answer: a reset gives one, and the database is served.
  const apiUrl = gateway.apiUrl;
  const reset = await call(apiUrl, 'POST', `/v1/databases/${db.id}/roles/app_owner/reset_password`, partner.api_key);
  t.equal(reset.status, 200);
  const r = reset.body;
  t.equal(await psql(`host=${r.host} hostaddr=127.0.0.1 port=${gateway.proxyPort} user=${r.role} dbname=${r.database} password=${r.password} sslmode=require`, 'SELECT current_user'), 'app_owner');

  for (let i = 0; (await gateway.core.deletions.pending()).length > 0; i++) {
    if (i > 600) throw new Error('the owed delete was not finished');
    await new Promise((r) => setTimeout(r, 100));
  }
  t.pass('the delete owed from before the kill is finished (the project was already gone)');
  t.same(fake.violations, []);
});

t.test('kill -9 after Neon made a branch, and after it restored one: the next start finishes both', async (t) => {
  let pgfleet = await spawnPgfleet();
  const partner = (await call(pgfleet.url, 'POST', '/v1/partners', ADMIN_KEY, { name: 'branching' })).body;
  const key = partner.api_key;
  const db = (await call(pgfleet.url, 'POST', '/v1/databases', key, { user_id: 'carol', region: 'aws-us-east-2' })).body;
  const project = [...fake.projects.values()].find((p) => p.name === db.id)!;
  const conninfo = (proxyPort: number, endpoint: string) =>
    `host=127.0.0.1 port=${proxyPort} user=${db.role} dbname=${db.database} password=${db.password} sslmode=require options=endpoint=${endpoint}`;
  await psql(conninfo(pgfleet.proxyPort, db.endpoint_id), 'CREATE TABLE items (id int); INSERT INTO items VALUES (1)');
  const at = await psql(conninfo(pgfleet.proxyPort, db.endpoint_id), `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
  await psql(conninfo(pgfleet.proxyPort, db.endpoint_id), 'INSERT INTO items VALUES (2)');

  killAfterAnswer(pgfleet.child, 'createProjectBranch');
  await t.rejects(call(pgfleet.url, 'POST', `/v1/databases/${db.id}/branches`, key, { name: 'dev' }), 'pgfleet died during the branch creation');
  await pgfleet.exited;
  const branchesAtNeon = project.branches.size;

  pgfleet = await spawnPgfleet();
  const dev = await call(pgfleet.url, 'GET', `/v1/databases/${db.id}/branches/dev`, key);
  t.equal(dev.status, 200, 'the branch Neon made is finished at the next start');
  t.equal(project.branches.size, branchesAtNeon, 'adopted, not made again');
  t.equal(await psql(conninfo(pgfleet.proxyPort, dev.body.endpoint_id), 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM items'), '1,2', 'and served');

  killAfterAnswer(pgfleet.child, 'restoreProjectBranch');
  await t.rejects(call(pgfleet.url, 'POST', `/v1/databases/${db.id}/restore`, key, { at }), 'pgfleet died during the restore');
  await pgfleet.exited;

  pgfleet = await spawnPgfleet();
  t.teardown(() => { pgfleet.child.kill('SIGKILL'); });
  const list = (await call(pgfleet.url, 'GET', `/v1/databases/${db.id}/branches`, key)).body.branches;
  const before = list.find((b: { name: string }) => /^main_before_/.test(b.name));
  t.ok(before, 'the branch of the state before the restore is finished at the next start');
  t.equal(await psql(conninfo(pgfleet.proxyPort, db.endpoint_id), 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM items'), '1', 'main is restored');
  t.equal(await psql(conninfo(pgfleet.proxyPort, before.endpoint_id), 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM items'), '1,2', 'nothing of the state before is lost');
  t.same(fake.violations, []);
});
