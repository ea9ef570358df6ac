// Postgres majors: a database's compute runs the major chosen at its creation (embedded 15, 16, 17
// and 18), branches inherit it, and `pgfleet db dump` / `restore` run the client programs of that
// major (Debian's pg_dump 15 here) through the proxy. One gateway: each major's template is made once.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { DEFAULT_EXTENSIONS, loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { backfillPgVersions } from '../src/catalog/pg-version-backfill.ts';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { type Conn, connect, query } from './endpoint-client.ts';
import { repoRoot, tmpDataDir } from './helpers.ts';

const execFileAsync = promisify(execFile);

// The default region takes PGFLEET_PG_VERSION; "legacy" sets its own major.
const api = await startApi({
  PGFLEET_PG_VERSION: '16',
  PGFLEET_REGIONS: JSON.stringify({ local: { provider: 'local' }, legacy: { provider: 'local', pg_version: 15 } }),
});
t.teardown(() => api.stop());
const { key } = await api.partner('acme');

interface Created extends Conn { id: string; password: string; pg_version: number; postgres_version: string }

async function create(body: Record<string, unknown>): Promise<Created> {
  const res = await api.request('POST', '/v1/databases', { key, body: { user_id: 'u', suspend_timeout_seconds: 0, ...body } });
  if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const serverVersion = async (target: Conn, password: string) => (await query(api, target, password, 'SHOW server_version'))[0].server_version as string;

/** `pgfleet` as its own process against this gateway; never throws. */
async function pgfleet(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = execFileAsync(process.execPath, [path.join(repoRoot, 'bin', 'pgfleet.js'), ...args], {
    env: { ...process.env, PGFLEET_API_URL: api.url, PGFLEET_API_KEY: key, ...env },
  });
  return run.then(({ stdout, stderr }) => ({ code: 0, stdout, stderr }), (e: { code: number; stdout: string; stderr: string }) => e);
}

t.test('a region default, a region setting, and a major per database; the answer and the compute agree', async (t) => {
  const byDefault = await create({});
  t.equal(byDefault.pg_version, 16, 'the default region runs PGFLEET_PG_VERSION');
  const legacy = await create({ region: 'legacy' });
  t.equal(legacy.pg_version, 15, "the region's own pg_version");
  for (const major of [15, 16, 17, 18]) {
    const db = major === 16 ? byDefault : major === 15 ? legacy : await create({ pg_version: major });
    const installed = api.gateway.core.installs.versionOf(major);
    t.equal(db.postgres_version, installed, `${major}: the full version of its binaries`);
    const version = await serverVersion(db, db.password);
    t.equal(version, installed, `${major}: SHOW server_version through the proxy`);
    const shown = (await api.request('GET', `/v1/databases/${db.id}`, { key })).body;
    t.same([shown.pg_version, shown.postgres_version], [major, installed]);
    // The allowlist's default: the 20 trusted contrib extensions, the same in every major.
    await query(api, db, db.password, DEFAULT_EXTENSIONS.map((e) => `CREATE EXTENSION "${e}"`).join('; '));
    const [{ n }] = await query(api, db, db.password, `SELECT count(*)::int AS n FROM pg_extension WHERE extname <> 'plpgsql'`);
    t.equal(n, DEFAULT_EXTENSIONS.length, `${major}: the tenant creates each default extension`);
  }
  const shown = await pgfleet(['db', 'show', legacy.id]);
  t.match(shown.stdout, /^pg_version: 15$/m, 'pgfleet db show names the major');
  t.match(shown.stdout, /^postgres_version: 15\.\d+$/m);
});

t.test('a major the region does not run is a 400 naming those it runs', async (t) => {
  const res = await api.request('POST', '/v1/databases', { key, body: { user_id: 'u', pg_version: 14 } });
  t.equal(res.status, 400);
  t.equal(res.body.error.message, `pg_version: region "local" runs Postgres ${api.gateway.core.installs.majors.join(', ')}; not 14`);
  t.same(api.gateway.core.installs.majors, [15, 16, 17, 18], 'the embedded majors are installed');
});

t.test('before 16 the owner has no CREATEROLE (it could grant itself the program and file roles); roles added while running connect', async (t) => {
  for (const major of [15, 16]) {
    const db = await create({ pg_version: major });
    const client = connect(api, db, db.password);
    await client.connect();
    t.teardown(() => client.end());
    const { rows } = await client.query('SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user');
    t.equal(rows[0].rolcreaterole, major >= 16, `${major}: CREATEROLE ${major >= 16 ? 'kept' : 'withheld'}`);
    for (const role of ['pg_execute_server_program', 'pg_read_server_files']) {
      await t.rejects(client.query(`GRANT ${role} TO ${db.role}`), { code: '42501' }, `${major}: GRANT ${role} is refused`);
    }
    // Before 16 the compute's ident map lists each role pgfleet connects as: one added while it runs is admitted at once.
    const added = await api.request('POST', `/v1/databases/${db.id}/roles`, { key, body: { name: 'reader' } });
    t.equal(added.status, 201, JSON.stringify(added.body));
    t.same(await query(api, { ...db, role: 'reader' }, added.body.password, 'SELECT current_user AS who'), [{ who: 'reader' }], `${major}: the new role connects`);
  }
});

t.test("a branch runs its database's major", async (t) => {
  const db = await create({ pg_version: 18 });
  await query(api, db, db.password, 'CREATE TABLE t (x int); INSERT INTO t VALUES (18)');
  const branch = await api.request('POST', `/v1/databases/${db.id}/branches`, { key, body: { name: 'dev' } });
  t.equal(branch.status, 201, JSON.stringify(branch.body));
  t.match(await serverVersion(branch.body, db.password), /^18\./);
  t.same(await query(api, branch.body, db.password, 'SELECT x FROM t'), [{ x: 18 }]);
});

t.test('pgfleet db dump / restore: a Postgres 15 tenant into another, with Debian\'s pg_dump 15, through the proxy', async (t) => {
  const source = await create({ pg_version: 15 });
  const target = await create({ pg_version: 15 });
  await query(api, source, source.password, `
    CREATE EXTENSION pg_trgm;
    CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, at timestamptz DEFAULT now());
    CREATE INDEX notes_body_trgm ON notes USING gin (body gin_trgm_ops);
    INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 500) g;
    CREATE VIEW long_notes AS SELECT id, body FROM notes WHERE length(body) > 7;
    CREATE FUNCTION shout(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper($1) || '!' $$;
    COMMENT ON TABLE notes IS 'kept in the dump'`);
  const dir = tmpDataDir('pgfleet-dump');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'source.dump');

  const dumped = await pgfleet(['db', 'dump', source.id, '--out', file]);
  t.equal(dumped.code, 0, dumped.stderr);
  t.match(dumped.stderr, `dumped ${source.id} (Postgres 15) to ${file}`);
  t.ok(fs.statSync(file).size > 0, 'the archive is written');
  t.match(fs.readFileSync(file).subarray(0, 5).toString(), 'PGDMP', "pg_dump's custom format");

  const restored = await pgfleet(['db', 'restore', target.id, '--in', file]);
  t.equal(restored.code, 0, restored.stderr);
  const check = `SELECT (SELECT count(*)::int FROM notes) AS n, (SELECT count(*)::int FROM long_notes) AS long, shout('hi') AS shouted,
      obj_description('notes'::regclass) AS comment, (SELECT tableowner FROM pg_tables WHERE tablename = 'notes') AS owner,
      (SELECT count(*)::int FROM notes WHERE body % 'note 42') > 0 AS trigram`;
  const expected = { n: 500, long: 401, shouted: 'HI!', comment: 'kept in the dump', owner: target.role, trigram: true };
  t.same(await query(api, target, target.password, check), [expected], 'rows, view, function, comment and extension arrived, owned by its owner');
  const [{ next }] = await query(api, target, target.password, `SELECT nextval('notes_id_seq')::int AS next`);
  t.equal(next, 501, 'the sequence went with its table');

  const twice = await pgfleet(['db', 'restore', target.id, '--in', file]);
  t.equal(twice.code, 1, 'a restore over the same objects fails');
  t.match(twice.stderr, /pg_restore 15\.\d+ .* failed with exit code 1/);
  t.same(await query(api, target, target.password, 'SELECT count(*)::int AS n FROM notes'), [{ n: 500 }], 'in one transaction: nothing of it stayed');
  const clean = await pgfleet(['db', 'restore', target.id, '--in', file, '--clean']);
  t.equal(clean.code, 0, clean.stderr);
  t.same(await query(api, target, target.password, check), [expected], '--clean drops the objects first');
  t.same(await query(api, source, source.password, 'SELECT count(*)::int AS n FROM notes'), [{ n: 500 }], 'the source is untouched');
});

t.test('dump of a major without its pg_dump: a clear error naming the major and the package', async (t) => {
  const db = await create({ pg_version: 18 });
  const r = await pgfleet(['db', 'dump', db.id, '--out', path.join(tmpDataDir('pgfleet-nodump'), 'x.dump')]);
  t.equal(r.code, 1);
  t.match(r.stderr, 'the database runs Postgres 18 and needs pg_dump 18, which is not installed (found only pg_dump 15.');
  t.match(r.stderr, 'install postgresql-client-18 from the PostgreSQL apt repository');
  t.match(r.stderr, 'PGFLEET_PG_CLIENT_BIN');
  const noInput = await pgfleet(['db', 'restore', db.id]);
  t.equal(noInput.code, 1);
  t.match(noInput.stderr, /db restore needs --in <file>/);
});

t.test('databases made before majors were kept get theirs: from the data, else the region default', async (t) => {
  const core = api.gateway.core;
  const started = await create({ pg_version: 18 });
  await query(api, started, started.password, 'SELECT 1');
  const never = await create({ region: 'legacy', pg_version: 17 });
  await core.catalog.query('UPDATE databases SET pg_version = NULL WHERE id = ANY($1)', [[started.id, never.id]]);
  await backfillPgVersions(core.catalog, core.regions, core.local, createLogger('silent'));
  const { rows } = await core.catalog.query('SELECT id, pg_version FROM databases WHERE id = ANY($1) ORDER BY id', [[started.id, never.id]]);
  t.same(Object.fromEntries(rows.map((r) => [r.id, r.pg_version])), { [started.id]: 18, [never.id]: 15 },
    'the started one from its PG_VERSION, the never-started one its region\'s default');
});

t.test('a default major that is not installed stops the start, naming the variable', async (t) => {
  const dataDir = tmpDataDir();
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ PGFLEET_DATA_DIR: dataDir, PGFLEET_PG_VERSION: '14', PGFLEET_LOG_LEVEL: 'silent', PGFLEET_ADMIN_KEY: ADMIN_KEY });
  await t.rejects(startCore(config), new ConfigError('PGFLEET_PG_VERSION',
    'region "local" would run Postgres 14, which its provider does not offer (it runs 15, 16, 17, 18; point PGFLEET_PG_BIN at the binaries of Postgres 14)'));
  t.notOk(fs.existsSync(path.join(dataDir, 'catalog')), 'checked before the catalog is made');
});
