/**
 * The backend pid a client is told (BackendKeyData: libpq's PQbackendPID, psycopg2's
 * conn.info.backend_pid) against pg_backend_pid() and the pid of a NotificationResponse, as
 * psycopg2's own test_backend_pid and test_notify compare them. Direct sessions, a kept (warm)
 * backend included, get the compute's real pid, so "ignore my own NOTIFY" works; a pooled client,
 * which has no backend of its own, gets a pid no backend has. Cancel keeps working with both.
 */
import pg from 'pg';
import t from 'tap';
import { until } from './helpers.ts';
import { execFileAsync, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture({ PGFLEET_WARM_BACKEND_IDLE_TIMEOUT: '30' });
t.teardown(() => f.stop());
const a = await f.createDatabase();

/** What a psycopg2 session sees of its pid; with `notify`, it LISTENs, NOTIFYs itself, and has `other` NOTIFY too. */
const PIDS = `
import json, select, sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
conn.autocommit = True
cur = conn.cursor()
out = {"backend_pid": conn.info.backend_pid, "get_backend_pid": conn.get_backend_pid()}
cur.execute("BEGIN; SELECT pg_backend_pid()")
out["pg_backend_pid"] = cur.fetchone()[0]
if sys.argv[2] == "notify":
    cur.execute("COMMIT; LISTEN pids")
    cur.execute("NOTIFY pids, 'mine'")
    other = psycopg2.connect(sys.argv[3])
    other.autocommit = True
    other.cursor().execute("NOTIFY pids, 'theirs'")
    out["other_pid"] = other.get_backend_pid()
    other.close()
    seen = []
    while len(seen) < 2 and select.select([conn], [], [], 10) != ([], [], []):
        conn.poll()
        seen += [{"pid": n.pid, "payload": n.payload} for n in conn.notifies]
        del conn.notifies[:]
    out["notifications"] = seen
else:
    cur.execute("NOTIFY pids, 'pooled'; COMMIT")
conn.close()
print(json.dumps(out))
`;

interface Pids {
  backend_pid: number;
  get_backend_pid: number;
  pg_backend_pid: number;
  other_pid?: number;
  notifications?: { pid: number; payload: string }[];
}

async function pids(dsn: string, mode: 'notify' | 'plain', other = ''): Promise<Pids> {
  const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', PIDS, dsn, mode, other]);
  return JSON.parse(stdout) as Pids;
}

t.test('direct: PQbackendPID is pg_backend_pid(), and a NOTIFY of its own carries it', async (t) => {
  const first = await pids(f.conninfo(a), 'notify', f.conninfo(a, 'application_name=other'));
  t.equal(first.backend_pid, first.pg_backend_pid, 'conn.info.backend_pid is pg_backend_pid()');
  t.equal(first.get_backend_pid, first.pg_backend_pid, 'get_backend_pid() too');
  t.same(first.notifications, [{ pid: first.pg_backend_pid, payload: 'mine' }, { pid: first.other_pid, payload: 'theirs' }],
    'its own notification carries its pid, another session\'s the other pid');
  t.not(first.other_pid, first.pg_backend_pid, 'so "ignore my own NOTIFY" tells them apart');

  await until('its backend to be kept', async () => f.proxy.warm.keptCount(a.database.branchId) >= 1, 10_000);
  const next = await pids(f.conninfo(a), 'notify', f.conninfo(a, 'application_name=other'));
  t.equal(next.pg_backend_pid, first.pg_backend_pid, 'the next client of the same startup gets the kept backend');
  t.equal(next.backend_pid, next.pg_backend_pid, 'and is told its real pid');
  t.same(next.notifications?.[0], { pid: next.backend_pid, payload: 'mine' }, 'its own notification carries it');
});

t.test('direct: psycopg2\'s cancel, with the real pid in its key, reaches the query', async (t) => {
  const script = `
import sys, threading, psycopg2
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
threading.Timer(1.0, conn.cancel).start()
try:
    cur.execute("SELECT pg_sleep(30)")
    print("not cancelled")
except psycopg2.errors.QueryCanceled:
    print("cancelled")
`;
  const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', script, f.conninfo(a)]);
  t.equal(stdout.trim(), 'cancelled', 'psycopg2 cancel() with the key it was given');
});

t.test('pooled: the client\'s pid is no backend\'s; its NOTIFY carries the pid of the backend that ran it', async (t) => {
  const listener = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
  await listener.connect();
  t.teardown(() => listener.end());
  const heard: { processId: number; payload?: string }[] = [];
  listener.on('notification', (n) => heard.push(n));
  await listener.query('LISTEN pids');

  const pooled = await pids(f.pooledConninfo(a), 'plain');
  t.equal(pooled.backend_pid, pooled.get_backend_pid);
  t.ok(pooled.backend_pid > 2 ** 22, `the pooled client's pid (${pooled.backend_pid}) is above any Linux pid`);
  t.not(pooled.backend_pid, pooled.pg_backend_pid, 'and is not the pid of the backend that ran its transaction');
  await until('the pooled NOTIFY to arrive', () => heard.length > 0, 10_000);
  t.same(heard.map((n) => [n.processId, n.payload]), [[pooled.pg_backend_pid, 'pooled']],
    'the notification carries the pid of the backend that ran the transaction, as pg_backend_pid() said in it');
});
