import fs from 'node:fs';
import pg from 'pg';
import t from 'tap';
import { listMigrations, migrate } from '../src/catalog/migrate.ts';
import { type Core, startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { testConfig } from './helpers.ts';

const config = testConfig();
let core: Core;
t.before(async () => {
  core = await startCore(config, createLogger('warn'));
});
t.teardown(async () => {
  await core.stop();
  fs.rmSync(config.dataDir, { recursive: true, force: true });
});

/** A pool of the catalog's server on another database; its clients may hear the server stop as they close. */
function poolOn(database: string): pg.Pool {
  const pool = new pg.Pool({ host: `${core.runDir}/catalog`, user: 'pgfleet_admin', database });
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

const SCHEMA = `SELECT table_name, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`;

t.test('migrations run twice change nothing', async (t) => {
  const before = (await core.catalog.query(SCHEMA)).rows;
  t.ok(before.length > 20, 'the schema exists');
  t.same(await migrate(core.catalog.pool), [], 'nothing pending the second time');
  t.same((await core.catalog.query(SCHEMA)).rows, before);
  const { rows } = await core.catalog.query('SELECT version FROM schema_migrations ORDER BY version');
  t.same(rows.map((r) => r.version), listMigrations().map((m) => m.version));
});

t.test('concurrent starts apply each migration exactly once', async (t) => {
  await core.catalog.query('CREATE DATABASE race');
  const pools = Array.from({ length: 4 }, () => poolOn('race'));
  const results = await Promise.all(pools.map((p) => migrate(p)));
  const applied = results.flat();
  t.same(applied.sort(), listMigrations().map((m) => m.name).sort(), 'every migration applied once across the racers');
  const { rows } = await pools[0]!.query('SELECT count(*)::int AS n FROM schema_migrations');
  t.equal(rows[0].n, listMigrations().length);
  await Promise.all(pools.map((p) => p.end()));
});

t.test('a failing migration rolls back whole', async (t) => {
  await core.catalog.query('CREATE DATABASE broken');
  const pool = poolOn('broken');
  const bad = [...listMigrations(), { version: 999, name: '999_bad.sql', sql: 'CREATE TABLE ok_table (x int); SELECT nonsense_column FROM nowhere;' }];
  await t.rejects(migrate(pool, bad));
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`);
  t.equal(rows[0].n, 0, 'no table of the failed run is left');
  await pool.end();
});

t.test("a provider's answer is merged into the kept state key by key, nested objects included", async (t) => {
  const merge = async (kept: unknown, patch: unknown) =>
    (await core.catalog.query('SELECT merge_provider_state($1, $2) AS s', [kept, patch])).rows[0].s;
  t.same(await merge({}, { a: 1 }), { a: 1 }, 'a new key is added');
  t.same(await merge({ a: 1, b: 'x' }, { a: 2 }), { a: 2, b: 'x' }, 'a kept key is replaced, the others stay');
  t.same(await merge({ neon: { projectId: 'p', passwords: { alice: 'a1', bob: 'b1' } } }, { neon: { passwords: { bob: 'b2' } } }),
    { neon: { projectId: 'p', passwords: { alice: 'a1', bob: 'b2' } } }, "one role's new password keeps the others' and the rest of the object");
  t.same(await merge({ a: { x: 1 } }, { a: [1, 2] }), { a: [1, 2] }, 'a non-object replaces an object');
  t.same(await merge({ a: 'text' }, { a: { x: 1 } }), { a: { x: 1 } }, 'an object replaces a non-object');
  t.same(await merge({ a: 1 }, { a: null }), { a: null }, 'null is kept as null');
});

t.test('concurrent merges into one row keep every patch', async (t) => {
  await core.catalog.query(`CREATE TABLE merge_race (id int PRIMARY KEY, provider_state jsonb NOT NULL DEFAULT '{}')`);
  t.teardown(() => core.catalog.query('DROP TABLE merge_race'));
  await core.catalog.query(`INSERT INTO merge_race (id, provider_state) VALUES (1, '{"passwords": {}}')`);
  const roles = Array.from({ length: 24 }, (_, i) => `role${i}`);
  await Promise.all(roles.map((role) => core.catalog.query(
    'UPDATE merge_race SET provider_state = merge_provider_state(provider_state, $1) WHERE id = 1', [{ passwords: { [role]: `sealed-${role}` } }])));
  const { rows } = await core.catalog.query('SELECT provider_state FROM merge_race WHERE id = 1');
  t.same(Object.keys(rows[0].provider_state.passwords).sort(), [...roles].sort(), 'each writer re-read the row the one before it committed');
});
