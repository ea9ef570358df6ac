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
import { nodeTs, tmpDataDir } from './helpers.ts';
import { freePort, psql } from './proxy-helpers.ts';

const fake = await FakeNeon.start();
t.teardown(() => fake.close());
const dataDir = tmpDataDir();
t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
const env = (apiPort: number) => ({
  ...neonRegionEnv(fake), PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: String(apiPort), PGFLEET_PROXY_PORT: '0',
  PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: ADMIN_KEY,
});

const call = async (url: string, method: string, path: string, key: string, body?: unknown) => {
  const res = await fetch(`${url}${path}`, {
    method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
};

/** pgfleet in a child process (so that it can be killed -9), with its API on a port of ours. */
async function spawnPgfleet(): Promise<{ child: ChildProcess; url: string; exited: Promise<unknown> }> {
  const port = await freePort();
  const [cmd, args] = nodeTs('main.ts');
  const child = spawn(cmd, args, { env: { ...process.env, ...env(port) }, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error('pgfleet exited at start');
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return { child, url, exited };
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
