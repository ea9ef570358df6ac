/**
 * Nothing a pooled client leaves on a backend reaches the next client of that backend, whichever
 * way it was taken: SQL, a DO block, a function, EXECUTE (issue 27, item 6). A pool of one backend,
 * so that every client shares it. Each path is first seen to hold for the client that took it (it
 * did reach the backend), then not for the next client.
 */
import pg from 'pg';
import t from 'tap';
import { startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture();
t.teardown(() => f.stop());
const a = await f.createDatabase();
await f.core.databases.update(f.partnerId, a.database.id, { poolSize: 1 });

async function client(): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: a.role, password: a.password, database: 'app',
    ssl: { servername: `${a.endpointId}-pooler.${f.core.config.domain}`, rejectUnauthorized: false },
  });
  c.on('error', () => {});
  await c.connect();
  return c;
}
const one = async (c: pg.Client, sql: string) => Object.values((await c.query(sql)).rows[0] ?? {})[0];

const owner = await client();
t.teardown(() => owner.end());
await owner.query(`CREATE ROLE tenant_reader; GRANT tenant_reader TO ${a.role}`);
await owner.query('CREATE SEQUENCE s');
await owner.query(`CREATE FUNCTION take_state() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('app.tenant', 'tenant-a', false);
  PERFORM set_config('role', 'tenant_reader', false);
  PERFORM pg_advisory_lock(4242);
  CREATE TEMP TABLE fn_temp (i int);
  EXECUTE 'LISTEN fn_channel';
  EXECUTE 'PREPARE fn_stmt AS SELECT 1';
END $$`);

/** What a session holds beyond its transactions, as the next client would see it. */
// A custom setting's value goes; its name stays defined, empty, as after SET LOCAL in one session (README).
const probe = `SELECT current_user::text AS role, coalesce(current_setting('app.tenant', true), '') AS tenant,
  (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int AS locks,
  (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int AS temps,
  (SELECT count(*) FROM pg_listening_channels())::int AS listening,
  (SELECT count(*) FROM pg_prepared_statements WHERE from_sql)::int AS prepared,
  (SELECT count(*) FROM pg_cursors)::int AS cursors`;
const clean = { role: a.role, tenant: '', locks: 0, temps: 0, listening: 0, prepared: 0, cursors: 0 };

const paths: [string, string][] = [
  ['a function', 'SELECT take_state()'],
  ['DO blocks', `DO $$BEGIN
    PERFORM set_config('app.tenant', 'tenant-a', false);
    SET ROLE tenant_reader;
    PERFORM pg_advisory_lock(4242);
    CREATE TEMP TABLE do_temp (i int);
    EXECUTE 'LISTEN do_channel';
    EXECUTE 'PREPARE do_stmt AS SELECT 1';
  END $$`],
  ['EXECUTE in a DO block', `DO $$BEGIN
    EXECUTE 'SELECT set_config(''app.tenant'', ''tenant-a'', false)';
    EXECUTE 'SET ROLE tenant_reader';
    EXECUTE 'SELECT pg_advisory_lock(4242)';
    EXECUTE 'CREATE TEMP TABLE ex_temp (i int)';
    EXECUTE 'LISTEN ex_channel';
    EXECUTE 'PREPARE ex_stmt AS SELECT 1';
  END $$`],
];

for (const [how, sql] of paths) {
  t.test(`state taken by ${how} stays with its client`, async (t) => {
    const taker = await client();
    const next = await client();
    const pid = await one(taker, 'SELECT pg_backend_pid()');
    t.equal(await one(next, 'SELECT pg_backend_pid()'), pid, 'both clients are served by the one backend');
    await taker.query(sql);
    // The same client, on the same backend, sees what it took: it did reach the backend.
    const held = (await taker.query(probe)).rows[0];
    t.match(held, { role: 'tenant_reader', tenant: 'tenant-a', locks: 1, temps: 1, listening: 1, prepared: 1 }, 'the taker holds it');
    t.same((await next.query(probe)).rows[0], clean, 'the next client of the backend finds none of it');
    t.equal(await one(next, 'SELECT pg_backend_pid()'), pid, 'on the same backend');
    // The lock is gone for real: a session of its own (the unpooled endpoint) takes it at once.
    const direct = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
    await direct.connect();
    t.equal(await one(direct, 'SELECT pg_try_advisory_lock(4242)'), true, 'the advisory lock was released');
    await direct.end();
    await taker.end();
    await next.end();
  });
}

t.test('a cursor WITH HOLD and sequence state do not cross either', async (t) => {
  const taker = await client();
  const next = await client();
  await taker.query('SELECT nextval(\'s\')');
  t.equal(Number(await one(taker, 'SELECT currval(\'s\')')), 1, 'the taker has currval');
  await taker.query(`DO $$BEGIN EXECUTE 'DECLARE dc CURSOR WITH HOLD FOR SELECT 1'; END $$`);
  t.equal(await one(taker, 'SELECT count(*)::int FROM pg_cursors'), 1, 'the taker has its cursor WITH HOLD');
  await t.rejects(next.query('SELECT currval(\'s\')'), { code: '55000' }, 'currval is not defined for the next client');
  t.equal(await one(next, 'SELECT count(*)::int FROM pg_cursors'), 0, 'no cursor is left');
  await taker.end();
  await next.end();
});

t.test('up front: session features named in SQL are refused with 0A000 and a hint', async (t) => {
  const c = await client();
  for (const sql of ['LISTEN x', 'PREPARE p AS SELECT 1', 'SELECT pg_advisory_lock(1)', 'CREATE TEMP TABLE x (i int)', 'DECLARE c CURSOR WITH HOLD FOR SELECT 1']) {
    await t.rejects(c.query(sql), { code: '0A000', hint: /unpooled endpoint/ }, sql);
  }
  await c.end();
});
