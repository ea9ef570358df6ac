// History, branches and point-in-time restore of databases in a neon region, through the API and
// the proxy: each maps to Neon's own branching (the fake Neon API, whose branches keep real history).
import t from 'tap';
import { startApi } from './api-client.ts';
import { type Conn, checkRestoreOfRestore, connect, query } from './endpoint-client.ts';
import { FakeNeon } from './fake-neon/fake-neon.ts';
import { neonRegionEnv } from './fake-neon/pgfleet-side.ts';
import { until } from './helpers.ts';

const fake = await FakeNeon.start();
t.teardown(() => fake.close());
const api = await startApi({ ...neonRegionEnv(fake), PGFLEET_NEON_RECONCILE_INTERVAL: '0' });
t.teardown(() => api.stop());
const { key } = await api.partner('acme');
const REGION = 'aws-us-east-2';

const ids = (rows: { id: number }[]) => rows.map((r) => r.id);
const callsSince = (from: number, operationId: string) => fake.calls.slice(from).filter((c) => c.operationId === operationId);

t.test('branch now and at T, restore to T, the _before_ branch, restore of a restore, isolation: Neon branches', async (t) => {
  const created = await api.request('POST', '/v1/databases', { key, body: { user_id: 'alice', region: REGION, suspend_timeout_seconds: 0 } });
  t.equal(created.status, 201, JSON.stringify(created.body));
  const db = created.body;
  let pw = db.password;
  const q = (target: Conn, sql: string) => query(api, target, pw, sql);
  const project = [...fake.projects.values()].find((p) => p.name === db.id)!;
  // The project gets the database's history retention (7 days by default) at the next upkeep.
  await api.gateway.core.branches.upkeep();
  t.equal(project.historyRetentionSeconds, 604_800, "the project keeps the database's history retention");

  await q(db, `CREATE TABLE items (id int PRIMARY KEY); CREATE TABLE keep (x text); INSERT INTO items VALUES (1), (2), (3); INSERT INTO keep VALUES ('kept')`);
  const [{ t: at }] = await q(db, 'SELECT clock_timestamp() AS t');
  await q(db, 'INSERT INTO items VALUES (4), (5); DROP TABLE keep');

  let from = fake.calls.length;
  const atT = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'at-t', at: at.toISOString() } });
  t.equal(atT.status, 201, JSON.stringify(atT.body));
  t.equal(atT.body.parent, 'main');
  const made = callsSince(from, 'createProjectBranch');
  t.equal(made.length, 1, 'one Neon branch');
  const neonChild = [...project.branches.values()].find((b) => b.name === atT.body.id)!;
  t.ok(neonChild, 'named after the pgfleet branch');
  t.equal(neonChild.parentId, project.defaultBranchId, "its Neon parent is main's");
  t.equal(neonChild.parentTimestamp?.toISOString(), at.toISOString(), 'made at parent_timestamp T');
  t.ok(fake.endpointOf(project, neonChild.id), 'with its own read-write endpoint');
  t.not(atT.body.endpoint_id, db.endpoint_id, 'its own pgfleet endpoint');
  t.same(ids(await q(atT.body, 'SELECT id FROM items ORDER BY id')), [1, 2, 3], 'a branch at T has exactly the rows before T');
  t.same(await q(atT.body, 'SELECT x FROM keep'), [{ x: 'kept' }], 'and the table dropped after T');

  // Isolation both ways, with the same password.
  await q(atT.body, 'INSERT INTO items VALUES (100)');
  await q(db, 'INSERT INTO items VALUES (6)');
  t.same(ids(await q(db, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 4, 5, 6], "the branch's write is not in main");
  t.same(ids(await q(atT.body, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 100], "main's write is not in the branch");

  // A branch now (main runs: Neon branches from its head).
  const dev = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'dev' } });
  t.equal(dev.status, 201, JSON.stringify(dev.body));
  t.same(ids(await q(dev.body, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 4, 5, 6], 'a branch now has everything committed');

  // Restore main to T: Neon's restore, keeping the state before under the _before_ branch.
  const session = connect(api, db, pw);
  await session.connect();
  const ended = new Promise<any>((resolve) => session.once('error', resolve));
  from = fake.calls.length;
  const restored = await api.request('POST', `/v1/databases/${db.id}/restore`, { key, body: { at: at.toISOString() } });
  t.equal(restored.status, 200, JSON.stringify(restored.body));
  const err = await ended;
  t.equal(err.code, '57P01', 'an open session ends with 57P01');
  t.match(err.message, /being restored/);
  const restoreCall = fake.calls.slice(from).find((c) => c.operationId === 'restoreProjectBranch');
  t.ok(restoreCall, 'Neon restored the branch');
  t.equal(restored.body.branch.endpoint_id, db.endpoint_id, 'the restored branch keeps its endpoint');
  t.equal(fake.mainEndpoint(project).branchId, project.defaultBranchId, 'and its Neon endpoint');
  t.same(ids(await q(db, 'SELECT id FROM items ORDER BY id')), [1, 2, 3], 'exactly the rows before T');
  t.same(await q(db, 'SELECT x FROM keep'), [{ x: 'kept' }], 'the dropped table is back');
  const before = restored.body.before;
  t.match(before.name, /^main_before_\d{8}T\d{9}Z$/);
  t.ok([...project.branches.values()].some((b) => b.name === before.id), 'Neon kept the state before under its name');
  t.equal(callsSince(from, 'createProjectEndpoint').length, 1, 'and it got an endpoint');
  t.same(ids(await q(before, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 4, 5, 6], 'the _before_ branch holds the state just before');

  // Restore of a restore.
  await checkRestoreOfRestore(t, api, key, db, () => pw, [1, 2, 3]);

  // The restore moved main's children to the branch of the state before (as Neon does: they descend from that history).
  const atTNow = await api.request('GET', `/v1/databases/${db.id}/branches/at-t`, { key });
  t.equal(atTNow.body.parent, before.name, "main's children now hang from the _before_ branch");
  t.equal(neonChild.parentId, [...project.branches.values()].find((b) => b.name === before.id)!.id, 'at Neon too');

  // Reset: the branch becomes its parent as it is now.
  const reset = await api.request('POST', `/v1/databases/${db.id}/branches/at-t/reset`, { key });
  t.equal(reset.status, 200, JSON.stringify(reset.body));
  t.same(ids(await q(atT.body, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 4, 5, 6], "a reset branch has its parent's data");

  // Roles belong to the database: one added later works on every branch; a reset password too.
  const role = await api.request('POST', `/v1/databases/${db.id}/roles`, { key, body: { name: 'reader' } });
  t.equal(role.status, 201, JSON.stringify(role.body));
  t.ok(fake.mainBranch(project).roles.has('reader') && neonChild.roles.has('reader'), 'the role is made on each Neon branch');
  t.same(await query(api, { ...dev.body, role: 'reader' }, role.body.password, 'SELECT current_user AS who'), [{ who: 'reader' }], 'and logs in to a branch');
  const newPw = await api.request('POST', `/v1/databases/${db.id}/roles/${db.role}/reset_password`, { key });
  t.equal(newPw.status, 200);
  pw = newPw.body.password;
  t.same(await q(dev.body, 'SELECT 1 AS ok'), [{ ok: 1 }], 'the new password works on a branch');

  // Delete: Neon keeps a branch with children; a leaf goes with its Neon branch.
  const grandchild = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'dev-child', parent: 'dev' } });
  t.equal(grandchild.status, 201, JSON.stringify(grandchild.body));
  const refused = await api.request('DELETE', `/v1/databases/${db.id}/branches/dev`, { key });
  t.equal(refused.status, 409, 'a branch with children is not deleted');
  t.match(refused.body.error.message, /child branches \(dev-child\)/);
  const neonBranches = project.branches.size;
  t.equal((await api.request('DELETE', `/v1/databases/${db.id}/branches/dev-child`, { key })).status, 204);
  t.equal((await api.request('DELETE', `/v1/databases/${db.id}/branches/dev`, { key })).status, 204, 'then its parent');
  t.equal(project.branches.size, neonBranches - 2, 'their Neon branches are gone');
  t.same(ids(await q(db, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 10], 'main is untouched');

  t.equal((await api.request('DELETE', `/v1/databases/${db.id}`, { key })).status, 204);
  await api.gateway.core.deletions.attempt(db.id);
  t.notOk(fake.projects.has(project.id), 'deleting the database deletes the project with every branch');
  t.same(fake.violations, [], 'every request followed the OpenAPI document');
});

t.test("history at Neon: the project's retention bounds `at`; a failed branch leaves nothing behind", async (t) => {
  const created = await api.request('POST', '/v1/databases', { key, body: { user_id: 'bob', region: REGION, history_retention_seconds: 3600 } });
  t.equal(created.status, 201, JSON.stringify(created.body));
  const db = created.body;
  const project = [...fake.projects.values()].find((p) => p.name === db.id)!;
  await api.gateway.core.branches.upkeep();
  t.equal(project.historyRetentionSeconds, 3600, 'the retention reaches Neon');
  const main = await api.request('GET', `/v1/databases/${db.id}/branches/main`, { key });
  t.ok(main.body.earliest_restorable_at, 'an earliest restorable time');

  const tooOld = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'old', at: new Date(Date.now() - 7200_000).toISOString() } });
  t.equal(tooOld.status, 400);
  t.match(tooOld.body.error.message, /earliest restorable time is/);

  const patched = await api.request('PATCH', `/v1/databases/${db.id}`, { key, body: { history_retention_seconds: 0 } });
  t.equal(patched.status, 200);
  await api.gateway.core.branches.upkeep();
  t.equal(project.historyRetentionSeconds, 0, 'no history kept at Neon either');
  const none = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'past', at: new Date(Date.now() - 1000).toISOString() } });
  t.equal(none.status, 400);
  t.match(none.body.error.message, /keeps no history/);

  // Neon made the branch but its answer was lost: pgfleet finds it by name instead of making a second.
  let neonBranches = project.branches.size;
  fake.loseAnswer('createProjectBranch', 1, 500);
  const lost = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'answer-lost' } });
  t.equal(lost.status, 201, JSON.stringify(lost.body));
  t.equal(project.branches.size, neonBranches + 1, 'one Neon branch, adopted');
  t.same(await query(api, lost.body, db.password, 'SELECT 1 AS ok'), [{ ok: 1 }], 'and served');

  // A step after Neon made it fails: the Neon branch goes, and pgfleet keeps no row.
  neonBranches = project.branches.size;
  fake.failNext('getProjectBranchRolePassword', 400, 1);
  const failed = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'doomed' } });
  t.equal(failed.status, 422, JSON.stringify(failed.body));
  t.equal(project.branches.size, neonBranches, 'nothing is left at Neon');
  t.equal((await api.request('GET', `/v1/databases/${db.id}/branches/doomed`, { key })).status, 404, 'nor at pgfleet');
  const again = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'doomed' } });
  t.equal(again.status, 201, 'the name can be used again');
  t.same(fake.violations, []);
});

t.test('upkeep removes a branch whose creation was abandoned, never one being made', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'dora', region: REGION } })).body;
  const core = api.gateway.core;
  const main = (await core.catalog.query('SELECT id FROM branches WHERE database_id = $1', [db.id])).rows[0].id;
  // A gateway killed before it asked Neon for the branch left this row.
  await core.catalog.tx(async (tx) => {
    await tx.query(`INSERT INTO branches (id, database_id, name, parent_id, state) VALUES ('br-abandoned-1', $1, 'abandoned', $2, 'creating')`, [db.id, main]);
    await tx.query(`INSERT INTO endpoints (id, branch_id) VALUES ('ep-abandoned-1', 'br-abandoned-1')`);
    await tx.query(`INSERT INTO computes (branch_id, state) VALUES ('br-abandoned-1', 'suspended')`);
  });
  const making = api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'in-the-making' } });
  await until('the branch to be in the making', async () =>
    (await core.catalog.query(`SELECT 1 FROM branches WHERE database_id = $1 AND name = 'in-the-making' AND state = 'creating'`, [db.id])).rowCount === 1);
  await core.branches.upkeep();
  t.equal((await core.catalog.query(`SELECT 1 FROM branches WHERE id = 'br-abandoned-1'`)).rowCount, 0, 'the abandoned one is removed');
  t.equal((await making).status, 201, 'the one being made is not');
  const again = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'abandoned' } });
  t.equal(again.status, 201, 'its name is free again');
});
