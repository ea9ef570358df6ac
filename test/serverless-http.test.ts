// Neon's serverless driver (from npm, unchanged) over pgfleet's POST /sql: neon() with parameters
// of the common types, array mode, full results, transaction() batches, JWT, wake, quotas, errors,
// the session pool (reuse, reset, separation by role), and bad requests.
import crypto from 'node:crypto';
import { type NeonQueryFunction, neon } from '@neondatabase/serverless';
import t from 'tap';
import { fetch } from 'undici';
import { startProxyFixture } from './proxy-helpers.ts';
import { pointDriverAt, serverlessUri } from './serverless-helpers.ts';

const f = await startProxyFixture({}, { httpPort: 0 });
t.teardown(() => f.stop());
const { fetchEndpoint, dispatcher } = pointDriverAt(f);
const a = await f.createDatabase();
const sql = neon(serverlessUri(a));

t.test('neon(): parameters of every common type, NULLs, bytea, arrays, json; array mode; full results', async (t) => {
  const when = new Date('2026-01-02T03:04:05.678Z');
  const [row] = await sql`SELECT ${42}::int AS i, ${9007199254740993n}::int8 AS big, ${1.5}::float8 AS f, ${'12.30'}::numeric AS n,
    ${true}::bool AS yes, ${`it's "quoted"`}::text AS s, ${null}::text AS nothing, ${when}::timestamptz AS ts,
    ${Buffer.from([0, 1, 254, 255])}::bytea AS bytes, ${[1, 2, 3]}::int[] AS ints, ${['a,b', 'c"d', null]}::text[] AS texts,
    ${JSON.stringify({ k: [1, 'two'] })}::jsonb AS doc, ${'2026-01-02'}::date AS day, ${crypto.randomUUID()}::uuid IS NOT NULL AS uuid_ok`;
  t.equal(row!.i, 42);
  t.equal(row!.big, '9007199254740993', 'int8 as text, as node-postgres gives it');
  t.equal(row!.f, 1.5);
  t.equal(row!.n, '12.30');
  t.equal(row!.yes, true);
  t.equal(row!.s, `it's "quoted"`);
  t.equal(row!.nothing, null);
  t.same(row!.ts, when);
  t.same(row!.bytes, Buffer.from([0, 1, 254, 255]));
  t.same(row!.ints, [1, 2, 3]);
  t.same(row!.texts, ['a,b', 'c"d', null]);
  t.same(row!.doc, { k: [1, 'two'] });
  t.equal(row!.uuid_ok, true);

  const asArrays = neon(serverlessUri(a), { arrayMode: true });
  t.same(await asArrays`SELECT 1 AS one, 'x' AS ex`, [[1, 'x']], 'array mode');

  const full = neon(serverlessUri(a), { fullResults: true });
  await full`CREATE TABLE pets (id serial PRIMARY KEY, name text NOT NULL)`;
  const inserted = await full`INSERT INTO pets (name) VALUES ('rex'), ('tom') RETURNING id, name`;
  t.equal(inserted.command, 'INSERT');
  t.equal(inserted.rowCount, 2);
  t.same(inserted.fields.map((fd) => [fd.name, fd.dataTypeID]), [['id', 23], ['name', 25]], 'field names and type ids');
  t.same(inserted.rows, [{ id: 1, name: 'rex' }, { id: 2, name: 'tom' }]);
  const updated = await full`UPDATE pets SET name = upper(name)`;
  t.same([updated.command, updated.rowCount, updated.rows], ['UPDATE', 2, []]);
  t.same(await sql.query('SELECT name FROM pets WHERE id = $1', [2]), [{ name: 'TOM' }], 'sql.query with a params array');
  const viaPooler = neon(serverlessUri(a).replace(`@${a.endpointId}.`, `@${a.endpointId}-pooler.`));
  t.same(await viaPooler`SELECT count(*)::int AS n FROM pets`, [{ n: 2 }], 'a -pooler host names the same database');
});

t.test('transaction(): one round trip in one transaction; a failing statement rolls the batch back', async (t) => {
  await sql`CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL)`;
  const [ins, count] = await sql.transaction([
    sql`INSERT INTO ledger VALUES (1, 100), (2, -40)`,
    sql`SELECT sum(amount)::int AS total FROM ledger`,
  ]);
  t.same(ins, []);
  t.same(count, [{ total: 60 }]);
  const err = await sql.transaction([
    sql`INSERT INTO ledger VALUES (3, 5)`,
    sql`INSERT INTO ledger VALUES (1, 1)`, // duplicate key
  ]).then(() => undefined, (e) => e);
  t.equal(err?.code, '23505', 'the error carries its SQLSTATE');
  t.equal(err?.constraint, 'ledger_pkey', 'and the other Postgres error fields');
  t.same(await sql`SELECT id FROM ledger ORDER BY id`, [{ id: 1 }, { id: 2 }], 'the first insert of the failed batch was rolled back');

  const [[level], [ro]] = await sql.transaction(
    [sql`SELECT current_setting('transaction_isolation') AS l`, sql`SELECT current_setting('transaction_read_only') AS r`],
    { isolationLevel: 'Serializable', readOnly: true },
  ) as [Record<string, string>[], Record<string, string>[]];
  t.same([level!.l, ro!.r], ['serializable', 'on'], 'isolation level and read-only reach the BEGIN');
  const readOnly = await sql.transaction([sql`INSERT INTO ledger VALUES (9, 9)`], { readOnly: true }).then(() => undefined, (e) => e);
  t.equal(readOnly?.code, '25006', 'a write in a read-only batch fails');
});

t.test('the session pool: reused by the same role, reset between requests, never shared across roles', async (t) => {
  const pid = async (q: NeonQueryFunction<false, false>) => ((await q`SELECT pg_backend_pid() AS p`)[0] as { p: number }).p;
  const first = await pid(sql);
  t.equal(await pid(sql), first, 'the next request reuses the compute session');
  await sql`SET search_path TO nowhere`;
  t.same(await sql`SELECT current_setting('search_path') AS p`, [{ p: '"$user", public' }], 'a SET does not outlive its request');
  await sql`CREATE TEMP TABLE scratch (x int)`;
  t.same(await sql`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'scratch'`, [{ n: 0 }], 'nor does a temporary table');
  await sql`BEGIN`;
  const xid = async () => ((await sql`SELECT pg_current_xact_id()::text AS x`)[0] as { x: string }).x;
  t.not(await xid(), await xid(), 'a BEGIN left open is rolled back before reuse: each request is its own transaction');

  const { database, password } = await f.core.databases.addRole(f.partnerId, a.database.id, 'reader');
  const reader = neon(serverlessUri({ ...a, database, role: 'reader' }, password));
  t.same(await reader`SELECT current_user AS u`, [{ u: 'reader' }]);
  const readerPid = await pid(reader);
  t.not(readerPid, await pid(sql), 'another role never gets the owner\'s session');
});

t.test('a JWT as the password, and as Authorization: Bearer (authToken)', async (t) => {
  const { token } = await f.core.jwt.tokens.issueFor(a.database, { ttlSeconds: 600 });
  t.same(await neon(serverlessUri(a, token))`SELECT current_user AS u`, [{ u: a.role }], 'JWT in the connection string');
  const bearer = neon(`postgresql://${a.role}@${a.endpointId}.db.localhost/app`, { authToken: async () => token });
  t.same(await bearer`SELECT 1 AS one`, [{ one: 1 }], 'JWT from authToken');
  const expired = neon(serverlessUri(a, 'eyJhbGciOiJFZERTQSJ9.eyJleHAiOjF9.c2ln'));
  const err = await expired`SELECT 1`.then(() => undefined, (e) => e);
  t.equal(err?.code, '28P01', 'a bad token is 28P01');
});

t.test('a suspended database is woken by the first request', async (t) => {
  await f.core.computes.suspend(a.database.branchId);
  t.equal(f.core.computes.info(a.database.branchId).state, 'suspended');
  t.same(await sql`SELECT count(*)::int AS n FROM pets`, [{ n: 2 }], 'the first query wakes it and sees the data');
  t.equal(f.core.computes.info(a.database.branchId).state, 'running');
});

t.test('errors as the driver surfaces them: wrong password, unknown endpoint, SQL errors, quotas, too large', async (t) => {
  const rejects = async (p: Promise<unknown>) => p.then(() => undefined, (e) => e);
  const wrong = await rejects(neon(serverlessUri(a, 'nope'))`SELECT 1`);
  t.equal(wrong?.code, '28P01');
  t.match(wrong?.message, /password authentication failed/);
  const unknown = await rejects(neon(`postgresql://${a.role}:x@ep-no-such-thing-1.db.localhost/app`)`SELECT 1`);
  t.equal(unknown?.code, '3D000');
  const syntax = await rejects(sql`SELEC 1`);
  t.equal(syntax?.code, '42601');
  t.equal(syntax?.position, '1', 'the error position comes through');
  const two = await rejects(sql.query('SELECT 1; SELECT 2'));
  t.equal(two?.code, '42601', 'one statement per query');

  const big = await rejects(sql`SELECT repeat('x', 1000000) FROM generate_series(1, 12)`);
  t.match(big?.message, /HTTP status 507.*response is too large/, 'over 10 MiB of results → 507');
  t.same(await sql`SELECT 1 AS one`, [{ one: 1 }], 'the session pool recovers from a cancelled statement');

  const b = await f.createDatabase();
  const sqlB = neon(serverlessUri(b));
  await sqlB`SELECT 1`;
  await f.core.databases.update(f.partnerId, b.database.id, { quotas: { data_transfer_bytes: 1 } });
  const over = await rejects(sqlB`SELECT 1`);
  t.equal(over?.code, '53400', 'over a quota → 53400');
  t.match(over?.message, /quota exceeded: data_transfer_bytes/);
});

t.test('a client that leaves mid-query: the statement is cancelled, the session reused', async (t) => {
  const leaving = new AbortController();
  const running = fetch(fetchEndpoint, {
    method: 'POST', dispatcher, signal: leaving.signal,
    headers: { 'Neon-Connection-String': serverlessUri(a) }, body: JSON.stringify({ query: 'SELECT pg_sleep(60) AS slept' }),
  }).catch((e) => e);
  const sleepers = async () => ((await sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60) AS slept' AND state = 'active'`)[0] as { n: number }).n;
  for (let i = 0; i < 600 && (await sleepers()) === 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(await sleepers(), 1, 'the statement runs');
  leaving.abort();
  t.equal((await running).name, 'AbortError');
  for (let i = 0; i < 600 && (await sleepers()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(await sleepers(), 0, 'it was cancelled when the client left');
});

t.test('bad requests: clear HTTP errors, CORS, and nothing else affected', async (t) => {
  const post = (headers: Record<string, string>, body: string) =>
    fetch(fetchEndpoint, { method: 'POST', headers, body, dispatcher });
  const conn = { 'Neon-Connection-String': serverlessUri(a) };
  const json = async (r: Awaited<ReturnType<typeof post>>) => [r.status, await r.json()] as [number, { message: string; code?: string }];

  let [status, body] = await json(await post({}, '{"query":"SELECT 1"}'));
  t.equal(status, 400);
  t.match(body.message, /missing Neon-Connection-String/);
  [status, body] = await json(await post({ 'Neon-Connection-String': 'not a url' }, '{"query":"SELECT 1"}'));
  t.same([status, body.message], [400, 'Neon-Connection-String is not a URL: give postgresql://role:password@<endpoint host>/<database>']);
  [status, body] = await json(await post({ 'Neon-Connection-String': 'mysql://u:p@h/db' }, '{"query":"SELECT 1"}'));
  t.equal(status, 400);
  [status, body] = await json(await post(conn, '{"query": 1}'));
  t.same([status, body.message], [400, 'the body: query must be a string']);
  [status, body] = await json(await post(conn, 'not json'));
  t.equal(status, 400);
  [status, body] = await json(await post({ ...conn, 'Neon-Batch-Isolation-Level': 'Chaos' }, '{"queries":[]}'));
  t.match([status, body.message], [400, /invalid isolation level/]);
  const huge = await post(conn, JSON.stringify({ query: 'SELECT $1', params: ['x'.repeat(11 * 1024 * 1024)] })).catch((e) => e);
  t.equal(huge.status, 413, 'a body over 10 MiB → 413');

  const raw = await post({ ...conn, 'Neon-Raw-Text-Output': 'false', 'Neon-Array-Mode': 'false' },
    JSON.stringify({ query: 'SELECT $1::int AS n, $2::bool AS b, $3::jsonb AS j, $4::text AS t', params: [7, true, { a: 1 }, null] }));
  t.equal(raw.headers.get('access-control-allow-origin'), '*');
  t.same(await raw.json(), {
    fields: [
      { name: 'n', dataTypeID: 23, tableID: 0, columnID: 0, dataTypeSize: 4, dataTypeModifier: -1, format: 'text' },
      { name: 'b', dataTypeID: 16, tableID: 0, columnID: 0, dataTypeSize: 1, dataTypeModifier: -1, format: 'text' },
      { name: 'j', dataTypeID: 3802, tableID: 0, columnID: 0, dataTypeSize: -1, dataTypeModifier: -1, format: 'text' },
      { name: 't', dataTypeID: 25, tableID: 0, columnID: 0, dataTypeSize: -1, dataTypeModifier: -1, format: 'text' },
    ],
    rows: [{ n: 7, b: true, j: { a: 1 }, t: null }],
    command: 'SELECT', rowCount: 1, rowAsArray: false,
  }, 'without raw text and array mode (curl-style), values come as JSON and rows as objects');

  const preflight = await fetch(fetchEndpoint, { method: 'OPTIONS', dispatcher });
  t.equal(preflight.status, 204);
  t.match(preflight.headers.get('access-control-allow-headers'), /Neon-Connection-String/);
  const elsewhere = await fetch(fetchEndpoint.replace('/sql', '/other'), { dispatcher });
  t.equal(elsewhere.status, 404);
  t.same(await sql`SELECT 2 AS two`, [{ two: 2 }], 'the door still serves good requests');
});
