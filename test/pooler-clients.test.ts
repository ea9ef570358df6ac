/**
 * Real clients through a `-pooler` endpoint: pgbench in every query mode, node-postgres named
 * statements across many pooled clients, postgres.js, psycopg2, JDBC server-side prepares,
 * and 1,000 concurrent clients on a pool of 10.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import t from 'tap';
import { execFileAsync, psql, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture({ PGFLEET_POOL_MAX_PREPARED_STATEMENTS: '5' });
t.teardown(() => f.stop());
const a = await f.createDatabase();
await f.core.databases.update(f.partnerId, a.database.id, { poolSize: 3 });
const pooledUri = a.pooledUriNoSni.replace('sslmode=require', 'sslmode=no-verify');
const directUri = a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify');

/** Backends of the role on the compute right now, seen through the unpooled endpoint. */
async function computeBackends(): Promise<number> {
  return Number(await psql(f.conninfo(a), `SELECT count(*) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()`));
}

t.test('the pooled twin: both URI forms, the proxy answers the startup, transactions keep their backend', async (t) => {
  t.match(a.pooledUri, new RegExp(`^postgresql://app_owner:.+@localhost:${f.proxy.port}/app\\?sslmode=require&sslrootcert=\\S+&options=endpoint%3D${a.endpointId}-pooler$`));
  t.equal(await psql(f.pooledConninfo(a), 'SELECT current_user'), 'app_owner', 'SNI form');
  const c = new pg.Client({ connectionString: pooledUri, application_name: 'pooled-test' });
  await c.connect();
  t.equal((await c.query('SHOW application_name')).rows[0].application_name, 'pooled-test', 'startup parameters reach the backend');
  await c.query('BEGIN');
  const pids = new Set<number>();
  for (let i = 0; i < 5; i++) pids.add((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  t.equal(pids.size, 1, 'a transaction stays on one backend');
  await c.query('COMMIT');
  await c.end();
});

t.test('pgbench -S in simple, extended and prepared mode: 12 clients on a pool of 3', async (t) => {
  await execFileAsync('pgbench', ['-i', '-s', '1', '-q', f.pooledConninfo(a)]);
  for (const mode of ['simple', 'extended', 'prepared']) {
    const { stdout } = await execFileAsync('pgbench', ['-n', '-S', '-M', mode, '-c', '12', '-t', '40', f.pooledConninfo(a)]);
    t.match(stdout, /number of transactions actually processed: 480\/480/, `${mode}: every transaction ran`);
    t.match(stdout, /number of failed transactions: 0 /, `${mode}: none failed`);
  }
  // TPC-B keeps a backend for a whole transaction; pgbench prepares synchronously, so the pool must fit its clients.
  const { stdout } = await execFileAsync('pgbench', ['-n', '-M', 'prepared', '-c', '3', '-t', '20', f.pooledConninfo(a)]);
  t.match(stdout, /actually processed: 60\/60/, 'TPC-B transactions through the pool');
  t.ok(await computeBackends() <= 3, 'the compute saw at most the pool size of backends');
});

t.test('node-postgres: same statement names with different queries across 30 pooled clients', async (t) => {
  const clients = Array.from({ length: 30 }, () => new pg.Client({ connectionString: pooledUri }));
  await Promise.all(clients.map((c) => c.connect()));
  for (let round = 0; round < 3; round++) {
    const results = await Promise.all(clients.map((c, i) =>
      // Every client calls its statement "q"; even and odd clients mean different queries.
      c.query({ name: 'q', text: i % 2 ? 'SELECT $1::int * 2 AS v' : 'SELECT $1::int + 1000 AS v', values: [i] })));
    t.same(results.map((r) => r.rows[0].v), clients.map((_, i) => (i % 2 ? i * 2 : i + 1000)), `round ${round}: each client ran its own "q"`);
  }
  // One client prepares more statements than a backend keeps (5): they are re-prepared as needed.
  const c = clients[0]!;
  for (let pass = 0; pass < 2; pass++) {
    for (let k = 0; k < 8; k++) {
      const r = await c.query({ name: `s${k}`, text: `SELECT $1::int + ${k} AS v`, values: [pass] });
      t.equal(r.rows[0].v, pass + k);
    }
  }
  const onBackend = await c.query(`SELECT count(*)::int AS n, bool_and(name LIKE 'pgf\\_%') AS renamed FROM pg_prepared_statements`);
  t.ok(onBackend.rows[0].n <= 5, 'a backend keeps at most PGFLEET_POOL_MAX_PREPARED_STATEMENTS');
  t.equal(onBackend.rows[0].renamed, true, 'statements carry the proxy\'s names on the backend');
  await Promise.all(clients.map((x) => x.end()));
});

t.test('postgres.js prepares by default: 200 queries on 20 pooled connections', async (t) => {
  const sql = postgres(a.pooledUriNoSni, { max: 20, onnotice: () => {} });
  try {
    const rows = await Promise.all(Array.from({ length: 200 }, (_, i) => sql`SELECT ${i}::int AS i, current_user AS u`));
    t.same(rows.map((r) => r[0]!.i), Array.from({ length: 200 }, (_, i) => i));
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM pgbench_branches`;
    t.equal(n, 1);
    await sql.begin(async (tx) => {
      await tx`CREATE TABLE js_items (id int)`;
      await tx`INSERT INTO js_items VALUES (${1}), (${2})`;
    });
    const [{ c }] = await sql`SELECT count(*)::int AS c FROM js_items`;
    t.equal(c, 2, 'a transaction through postgres.js committed');
  } finally {
    await sql.end();
  }
});

t.test('psycopg2: parameters, a failed transaction rolled back, the connection reused', async (t) => {
  const script = `
import psycopg2, sys
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
cur.execute("SELECT %s::int + %s::int", (20, 22))
print(cur.fetchone()[0])
try:
    cur.execute("SELECT 1/0")
except psycopg2.errors.DivisionByZero:
    conn.rollback()
    print("rolled back")
cur.execute("CREATE TABLE py_items (id int)")
cur.executemany("INSERT INTO py_items VALUES (%s)", [(i,) for i in range(10)])
conn.commit()
cur.execute("SELECT count(*) FROM py_items")
print(cur.fetchone()[0])
conn.close()
`;
  const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', script, f.pooledConninfo(a)]);
  t.equal(stdout.trim(), '42\nrolled back\n10');
});

t.test('JDBC with server-side prepared statements (prepareThreshold=1) over 4 pooled connections', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-jdbc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const source = path.join(dir, 'PooledJdbc.java');
  fs.writeFileSync(source, `
import java.sql.*;
import java.util.*;
public class PooledJdbc {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.setProperty("user", args[1]); p.setProperty("password", args[2]);
    p.setProperty("sslmode", "require"); p.setProperty("prepareThreshold", "1");
    List<Connection> conns = new ArrayList<>();
    for (int i = 0; i < 4; i++) conns.add(DriverManager.getConnection(args[0], p));
    long sum = 0;
    for (int round = 0; round < 25; round++) {
      for (int i = 0; i < conns.size(); i++) {
        Connection c = conns.get(i);
        c.setAutoCommit(round % 2 == 0);
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * " + (i + 1))) {
          ps.setInt(1, round);
          try (ResultSet rs = ps.executeQuery()) { rs.next(); sum += rs.getInt(1); }
          ps.setInt(1, round + 1);
          try (ResultSet rs = ps.executeQuery()) { rs.next(); sum += rs.getInt(1); }
        }
        if (round % 2 == 1) c.commit();
      }
    }
    for (Connection c : conns) c.close();
    System.out.println(sum);
  }
}
`);
  const url = `jdbc:postgresql://127.0.0.1:${f.proxy.port}/app?options=endpoint%3D${a.endpointId}-pooler`;
  const { stdout } = await execFileAsync('java', ['-cp', '/usr/share/java/postgresql.jar', source, url, a.role, a.password]);
  // Σ rounds Σ clients (2·round + 1)·(i + 1) = (Σ 2r + 1 over 25 rounds = 625) · (1 + 2 + 3 + 4)
  t.equal(stdout.trim(), String(625 * 10));
});

t.test('1,000 concurrent clients on one database with a pool of 10', async (t) => {
  // Its default share of client connections is 1,000: its quota raises it for the clients of the other tests.
  await f.core.databases.update(f.partnerId, a.database.id, { poolSize: 10, quotas: { max_client_connections: 1100 } });
  const clients = Array.from({ length: 1000 }, () => new pg.Client({ connectionString: pooledUri }));
  for (let i = 0; i < clients.length; i += 100) await Promise.all(clients.slice(i, i + 100).map((c) => c.connect()));
  t.equal(f.proxy.pooler.clientCount, 1000, 'all 1,000 are connected at once');
  const answers = await Promise.all(clients.map((c, i) => c.query('SELECT $1::int AS i, pg_backend_pid() AS pid', [i])));
  t.same(answers.map((r) => r.rows[0].i), clients.map((_, i) => i), 'every client got its own answer');
  const pids = new Set(answers.map((r) => r.rows[0].pid));
  t.ok(pids.size <= 10, `served by ${pids.size} backends (pool of 10)`);
  t.ok(await computeBackends() <= 10, 'the compute never had more than the pool');
  await Promise.all(clients.map((c) => c.end()));
  await f.core.databases.update(f.partnerId, a.database.id, { poolSize: 3 });
});

t.test('an unpooled session is unchanged beside the pool', async (t) => {
  const c = new pg.Client({ connectionString: directUri });
  await c.connect();
  await c.query('PREPARE sql_level AS SELECT 7 AS v');
  t.equal((await c.query('EXECUTE sql_level')).rows[0].v, 7, 'session features work on the unpooled endpoint');
  await c.end();
});
