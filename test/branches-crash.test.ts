// kill -9 of pgfleet during a restore and during a branch creation: after a restart, the catalog and the files agree.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { startGateway } from '../main.ts';
import { loadConfig } from '../src/config.ts';
import { postmastersUnder, startProcess, tmpDataDir, until } from './helpers.ts';

const ADMIN_KEY = 'test-admin-key-0123456789';
const env = (dataDir: string) => ({
  PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'info', PGFLEET_ADMIN_KEY: ADMIN_KEY,
});



const kill9 = (child: ChildProcess) => new Promise((resolve) => {
  child.once('exit', resolve);
  child.kill('SIGKILL');
});

/** Directories of a database's data dir whose recovery run has started (a staged restore or a branch being made). */
const recovering = (databaseDir: string) => fs.existsSync(databaseDir) &&
  fs.readdirSync(databaseDir).some((d) => fs.existsSync(path.join(databaseDir, d, 'recovery.log')) && !fs.existsSync(path.join(databaseDir, d, 'postgres.log')));

t.test('kill -9 during a restore and during a branch creation', async (t) => {
  const dataDir = tmpDataDir();
  let gw = await startProcess(env(dataDir));
  t.teardown(async () => {
    if (gw.child.exitCode === null && gw.child.signalCode === null) await kill9(gw.child);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  const call = async (method: string, route: string, key: string, body?: object) => {
    const res = await fetch(`${gw.api}${route}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
    return { status: res.status, body: await res.json().catch(() => undefined) as any };
  };
  const partner = (await call('POST', '/v1/partners', ADMIN_KEY, { name: 'acme' })).body;
  const key = partner.api_key;
  const db = (await call('POST', '/v1/databases', key, { user_id: 'alice', suspend_timeout_seconds: 0 })).body;
  const rows = async (proxyPort: number, endpoint = db.endpoint_id) => {
    const client = new pg.Client({ host: '127.0.0.1', port: proxyPort, user: db.role, password: db.password, database: db.database, ssl: { rejectUnauthorized: false }, options: `endpoint=${endpoint}` });
    await client.connect();
    try {
      return (await client.query('SELECT array_agg(id ORDER BY id) AS ids FROM items')).rows[0].ids;
    } finally {
      await client.end();
    }
  };
  const client = new pg.Client({ host: '127.0.0.1', port: gw.proxyPort, user: db.role, password: db.password, database: db.database, ssl: { rejectUnauthorized: false }, options: `endpoint=${db.endpoint_id}` });
  await client.connect();
  await client.query('CREATE TABLE items (id int); INSERT INTO items VALUES (1)');
  const at = (await client.query('SELECT clock_timestamp() AS t')).rows[0].t.toISOString();
  await client.query('INSERT INTO items VALUES (2)');
  await client.end();
  const databaseDir = path.join(dataDir, 'data', 'local', db.id);

  // 1. During a restore: killed while the restored copy is being recovered.
  void call('POST', `/v1/databases/${db.id}/restore`, key, { at }).catch(() => {});
  await until('the restore to recover its staged copy', () => recovering(databaseDir), 120_000, 5);
  await kill9(gw.child);
  gw = await startProcess(env(dataDir));
  let list = (await call('GET', `/v1/databases/${db.id}/branches`, key)).body.branches;
  t.same(list.map((b: any) => b.name), ['main'], 'no half-made _before_ branch is listed');
  t.same(await rows(gw.proxyPort), [1, 2], 'main kept all its data');
  t.same(fs.readdirSync(databaseDir).filter((d) => d.endsWith('.staging')), [], 'the staged copy is gone');

  // 2. During a branch creation at T.
  void call('POST', `/v1/databases/${db.id}/branches`, key, { name: 'dev', at }).catch(() => {});
  await until('the new branch to recover', () => recovering(databaseDir), 120_000, 5);
  await kill9(gw.child);
  const config = loadConfig({ ...env(dataDir), PGFLEET_LOG_LEVEL: 'warn' });
  const gateway = await startGateway(config);
  const { catalog } = gateway.core;
  t.same((await catalog.query(`SELECT name, state FROM branches WHERE database_id = $1`, [db.id])).rows, [{ name: 'main', state: 'ready' }], 'the half-made branch is gone from the catalog');
  const mainId = (await catalog.query(`SELECT id FROM branches WHERE database_id = $1`, [db.id])).rows[0].id;
  t.same(fs.readdirSync(databaseDir), [mainId], '... and from the disk');
  t.same(await rows(gateway.proxyPort), [1, 2], 'main is intact');

  // 3. Killed between the two renames of a restore's swap (simulated: the plan is recorded, main's directory moved aside).
  await gateway.core.computes.suspend(mainId);
  const mainDir = path.join(databaseDir, mainId);
  const moved = path.join(databaseDir, 'br-moved-aside-000001');
  fs.renameSync(mainDir, moved);
  fs.mkdirSync(mainDir);
  fs.writeFileSync(path.join(mainDir, 'half-restored'), '');
  await catalog.query(`INSERT INTO lifecycle_ops (id, kind, branch_id, detail) VALUES ('op-test', 'restore', $1, $2)`,
    [mainId, { id: 'op-test', refDir: mainDir, moved, staging: `${mainDir}.staging` }]);
  await gateway.stop();
  const again = await startGateway(config);
  t.teardown(() => again.stop());
  t.notOk(fs.existsSync(moved), 'the moved-aside directory went back');
  t.notOk(fs.existsSync(path.join(mainDir, 'half-restored')), 'the half-restored one is gone');
  t.same((await again.core.catalog.query('SELECT * FROM lifecycle_ops')).rows, [], 'the plan is forgotten');
  t.same(await rows(again.proxyPort), [1, 2], 'main serves its data');

  // And the history still works after all this.
  const res = await again.core.branches.restore(partner.id, db.id, { at });
  t.equal(res.before.parent, 'main');
  t.same(await rows(again.proxyPort), [1], 'a restore afterwards works');
  await again.stop();
  // A postmaster of a killed gateway is the launcher's to stop (a fast shutdown, SIGQUIT after 30 s); on a busy host that may still be under way.
  await until('no postgres to be left', () => postmastersUnder(dataDir).length === 0, 60_000, 200).catch(() => {});
  t.same(postmastersUnder(dataDir), [], 'no postgres left');
});
