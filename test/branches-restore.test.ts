// History, branches and point-in-time restore of local databases, through the API and the proxy.
import t from 'tap';
import { startApi } from './api-client.ts';
import { type Conn, checkRestoreOfRestore, connect, query } from './endpoint-client.ts';
import { psql } from './proxy-helpers.ts';


const ids = (rows: { id: number }[]) => rows.map((r) => r.id);

t.test('restore to T, branch at T, the _before_ branch, restore of a restore, isolation', async (t) => {
  const api = await startApi();
  t.teardown(() => api.stop());
  const { key } = await api.partner('acme');
  const created = await api.request('POST', '/v1/databases', { key, body: { user_id: 'alice', suspend_timeout_seconds: 0 } });
  t.equal(created.status, 201);
  const db = created.body;
  const pw = db.password;
  const q = (target: Conn, sql: string) => query(api, target, pw, sql);

  await q(db, 'CREATE TABLE items (id int PRIMARY KEY); CREATE TABLE keep (x text); INSERT INTO items VALUES (1), (2), (3); INSERT INTO keep VALUES (\'kept\')');
  const [{ t: at }] = await q(db, 'SELECT clock_timestamp() AS t');
  await q(db, 'INSERT INTO items VALUES (4), (5); DROP TABLE keep');

  const session = connect(api, db, pw);
  await session.connect();
  const ended = new Promise<any>((resolve) => session.once('error', resolve));

  const restored = await api.request('POST', `/v1/databases/${db.id}/restore`, { key, body: { at: at.toISOString() } });
  t.equal(restored.status, 200, JSON.stringify(restored.body));
  t.equal(restored.body.branch.endpoint_id, db.endpoint_id, 'the restored branch keeps its endpoint');
  t.match(restored.body.before.name, /^main_before_\d{8}T\d{9}Z$/);
  const err = await ended;
  t.equal(err.code, '57P01', 'an open session ends with 57P01');
  t.match(err.message, /being restored/);

  t.same(ids(await q(db, 'SELECT id FROM items ORDER BY id')), [1, 2, 3], 'exactly the rows before T');
  t.same(await q(db, 'SELECT x FROM keep'), [{ x: 'kept' }], 'the dropped table is back');

  const before = restored.body.before;
  t.not(before.endpoint_id, db.endpoint_id);
  t.same(ids(await q(before, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 4, 5], 'the _before_ branch holds the state just before');
  t.same(await q(before, `SELECT to_regclass('keep') AS r`), [{ r: null }]);

  const atT = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'at-t', parent: before.name, at: at.toISOString() } });
  t.equal(atT.status, 201, JSON.stringify(atT.body));
  t.same(ids(await q(atT.body, 'SELECT id FROM items ORDER BY id')), [1, 2, 3], 'a branch at T has the rows before T');
  t.same(await q(atT.body, 'SELECT x FROM keep'), [{ x: 'kept' }]);

  // Restore of a restore: main moves on from its restored state, then goes back to a point after the first restore.
  const beforeAgain = await checkRestoreOfRestore(t, api, key, db, () => pw, [1, 2, 3]);

  // Isolation both ways: a branch of main now.
  const dev = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'dev' } });
  t.equal(dev.status, 201, JSON.stringify(dev.body));
  t.not(dev.body.host, db.host, 'its own host');
  t.match(dev.body.connection_uri_sni, new RegExp(`^postgresql://app_owner@${dev.body.endpoint_id}\\.`));
  t.match(dev.body.connection_uri, new RegExp(`^postgresql://app_owner@localhost:\\d+/app\\?.*options=endpoint%3D${dev.body.endpoint_id}$`), 'the URI to hand out on a default install');
  t.match(dev.body.pooled_connection_uri, new RegExp(`^postgresql://app_owner@localhost:\\d+/app\\?.*options=endpoint%3D${dev.body.endpoint_id}-pooler$`), 'and its pooled twin');
  t.equal(dev.body.pooled_host, `${dev.body.endpoint_id}-pooler.db.localhost`);
  t.match(dev.body.pooled_jdbc_url, new RegExp(`options=endpoint%3D${dev.body.endpoint_id}-pooler$`));
  const pooledUri = dev.body.pooled_connection_uri.replace('app_owner@', `app_owner:${encodeURIComponent(pw)}@`);
  t.equal(await psql(pooledUri, 'SELECT current_user'), 'app_owner', 'the branch answers through its pooled URI');
  await q(dev.body, 'INSERT INTO items VALUES (100)');
  await q(db, 'INSERT INTO items VALUES (200)');
  t.same(ids(await q(dev.body, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 10, 100], 'the parent\'s writes are not in the branch');
  t.same(ids(await q(db, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 10, 200], 'the branch\'s writes are not in the parent');

  // A reset: the branch becomes its parent as it is now; its open session ends with a clear error first.
  const devSession = connect(api, dev.body, pw);
  await devSession.connect();
  const devEnded = new Promise<any>((resolve) => devSession.once('error', resolve));
  const reset = await api.request('POST', `/v1/databases/${db.id}/branches/dev/reset`, { key });
  t.equal(reset.status, 200, JSON.stringify(reset.body));
  t.equal(reset.body.endpoint_id, dev.body.endpoint_id, 'a reset keeps the endpoint');
  const resetErr = await devEnded;
  t.equal(resetErr.code, '57P01');
  t.match(resetErr.message, /being reset to its parent "main"/);
  t.same(ids(await q(dev.body, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 10, 200], 'after a reset the branch is its parent now');

  const list = await api.request('GET', `/v1/databases/${db.id}/branches`, { key });
  t.same(list.body.branches.map((b: any) => b.name).sort(), ['at-t', 'dev', 'main', before.name, beforeAgain.name].sort());
  t.equal((await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'dev' } })).status, 409, 'a name that exists → 409');
  t.equal((await api.request('DELETE', `/v1/databases/${db.id}/branches/main`, { key })).status, 409, 'main goes only with its database');
  t.equal((await api.request('DELETE', `/v1/databases/${db.id}/branches/dev`, { key })).status, 204);
  t.same(ids(await q(db, 'SELECT id FROM items ORDER BY id')), [1, 2, 3, 10, 200], 'deleting a branch leaves the parent');
  const gone = await connect(api, dev.body, pw).connect().then(() => undefined, (e) => e);
  t.equal(gone?.code, '3D000', 'the deleted branch\'s endpoint is gone');
});
