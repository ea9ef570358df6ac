/**
 * Routes from memory: a connection to a known endpoint reads nothing from the catalog, and every
 * change the API makes holds for the very next connection (one gateway; the fleet test checks
 * the same across gateways over Redis).
 */
import t from 'tap';
import { psql, psqlError, startProxyFixture } from './proxy-helpers.ts';
import { catalogStatements } from './helpers.ts';

const fx = await startProxyFixture({ PGFLEET_USAGE_FLUSH_SECONDS: '3600' });
t.teardown(() => fx.stop());
const { core } = fx;


t.test('a known endpoint: connections touch the catalog zero times', async (t) => {
  const db = await fx.createDatabase();
  t.equal(await psql(fx.conninfo(db), 'SELECT 1'), '1', 'the first connection reads the route (and wakes the compute)');
  // The usage tracker's first tick over the running compute reads its month totals once: not a connection's doing.
  await new Promise((r) => setTimeout(r, 1500));
  const statements = await catalogStatements(core.catalog, async () => {
    for (let i = 0; i < 5; i++) t.equal(await psql(fx.conninfo(db), 'SELECT current_user'), db.role);
    t.equal(await psql(fx.conninfo(db, `options='endpoint=${db.endpointId}'`), 'SELECT 2'), '2');
  });
  // Background loops, not a connection's doing: owed deletions (every 5 s), the webhook dispatcher, the
  // migration runner, branch expiry, and the scaler's record of a compute's size.
  const background = /provider_deletions|webhook_deliveries|migration_jobs|migration_targets|branch_expiry|compute_sizes/;
  t.same(statements.filter((sql) => !background.test(sql)), [], 'no catalog statement for six connections');
});

t.test('a reset password stops working at once, the new one works at once', async (t) => {
  const db = await fx.createDatabase();
  t.equal(await psql(fx.conninfo(db), 'SELECT 1'), '1');
  const { password } = await core.databases.resetPassword(fx.partnerId, db.database.id, db.role);
  t.match(await psqlError(fx.conninfo(db)), /password authentication failed/, 'the old password is refused on the next connection');
  t.equal(await psql(fx.conninfo({ ...db, password }), 'SELECT 1'), '1', 'the new one is accepted');
  // A cleartext password (the prefix form) goes through the same route.
  t.match(await psqlError(`host=127.0.0.1 port=${fx.proxy.port} user=${db.role} dbname=app sslmode=require password=endpoint=${db.endpointId};${db.password}`),
    /password authentication failed/, 'the old password in clear is refused too');
});

t.test('a role added, a quota lowered, a suspend timeout changed: each holds for the next connection', async (t) => {
  const db = await fx.createDatabase();
  t.equal(await psql(fx.conninfo(db), 'SELECT 1'), '1');
  const added = await core.databases.addRole(fx.partnerId, db.database.id, 'reader');
  t.equal(await psql(fx.conninfo({ ...db, role: 'reader', password: added.password }), 'SELECT current_user'), 'reader', 'the new role logs in at once');

  await core.databases.update(fx.partnerId, db.database.id, { quotas: { data_transfer_bytes: 0 } });
  t.match(await psqlError(fx.conninfo(db)), /quota exceeded: data_transfer_bytes/, 'a used-up quota refuses the next connection');
  await core.databases.update(fx.partnerId, db.database.id, { quotas: { data_transfer_bytes: null } });
  t.equal(await psql(fx.conninfo(db), 'SELECT 1'), '1', 'lifted: served again');

  await core.databases.update(fx.partnerId, db.database.id, { suspendTimeoutSeconds: 1234 });
  t.equal((await core.routes.byEndpoint(db.endpointId))?.suspendTimeoutSeconds, 1234, 'the route read after the change has it');
});

t.test('a deleted database, a deleted branch: no longer routed, at once', async (t) => {
  const db = await fx.createDatabase();
  const branch = await core.branches.create(fx.partnerId, db.database.id, { name: 'dev' });
  const onBranch = { ...db, endpointId: branch.endpointId };
  t.equal(await psql(fx.conninfo(onBranch), 'SELECT 1'), '1', 'the branch is served');
  t.equal(await psql(fx.conninfo(db), 'SELECT 1'), '1', 'the main branch is served');
  await core.branches.delete(fx.partnerId, db.database.id, 'dev');
  t.match(await psqlError(fx.conninfo(onBranch)), new RegExp(`endpoint "${branch.endpointId}" does not exist`), 'the deleted branch is not routed');
  t.equal(await psql(fx.conninfo(db), 'SELECT 1'), '1', 'its database still is');
  await core.databases.delete(fx.partnerId, db.database.id);
  t.match(await psqlError(fx.conninfo(db)), new RegExp(`endpoint "${db.endpointId}" does not exist`), 'the deleted database is not routed');
});

t.test('a route read while its database changed is returned but not kept', async (t) => {
  const db = await fx.createDatabase();
  const reading = core.routes.byEndpoint(db.endpointId);
  const changed = core.routes.changed(db.database.id);
  t.equal((await reading)?.endpointId, db.endpointId, 'the lookup that overlapped the change is answered');
  await changed;
  const statements = await catalogStatements(core.catalog, () => core.routes.byEndpoint(db.endpointId));
  t.equal(statements.length, 1, 'the next lookup reads the catalog again');
  t.same(await catalogStatements(core.catalog, () => core.routes.byEndpoint(db.endpointId)), [], 'and that one is kept');
});
