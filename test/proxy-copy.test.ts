import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { type Duplex, Readable } from 'node:stream';
import pg from 'pg';
import t from 'tap';
import { until } from './helpers.ts';
import { psql, startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture();
t.teardown(() => f.stop());
const a = await f.createDatabase();

const ROWS = 1_100_000; // ≈ 110 MB of COPY text
const line = (i: number) => `${i}\t${crypto.createHash('md5').update(String(i)).digest('hex')}${'.'.repeat(58)}${i % 997}\n`;

/** The rows as a stream, made on the fly, hashed as they go. */
function rows(hash: crypto.Hash): Readable {
  return Readable.from((function* () {
    for (let i = 0; i < ROWS; i += 2000) {
      let chunk = '';
      for (let j = i; j < Math.min(ROWS, i + 2000); j++) chunk += line(j);
      hash.update(chunk);
      yield Buffer.from(chunk);
    }
  })());
}

function runPsql(sql: string, stdin: Readable | undefined, onStdout: (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-d', f.conninfo(a), '-c', sql], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', onStdout);
    if (stdin) stdin.pipe(child.stdin);
    else child.stdin.end();
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psql exited ${code}: ${stderr}`))));
  });
}

t.test('COPY in and out of over 100 MB: checksums match and memory stays flat', async (t) => {
  await psql(f.conninfo(a), 'CREATE TABLE big (id int, body text)');
  let peakRss = 0;
  const base = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  t.teardown(() => clearInterval(sampler));

  const sent = crypto.createHash('sha256');
  let sentBytes = 0;
  const input = rows(sent).on('data', (c: Buffer) => (sentBytes += c.length));
  await runPsql('COPY big FROM STDIN', input, () => {});
  t.ok(sentBytes > 100 * 1024 * 1024, `sent ${(sentBytes / 1048576).toFixed(0)} MB`);
  t.equal(await psql(f.conninfo(a), 'SELECT count(*) FROM big'), String(ROWS));

  const received = crypto.createHash('sha256');
  let receivedBytes = 0;
  await runPsql('COPY (SELECT * FROM big ORDER BY id) TO STDOUT', undefined, (c) => {
    received.update(c);
    receivedBytes += c.length;
  });
  t.equal(receivedBytes, sentBytes);
  t.equal(received.digest('hex'), sent.digest('hex'), 'what came out is what went in');
  clearInterval(sampler);
  const grew = (peakRss - base) / 1048576;
  t.ok(grew < 100, `the gateway process grew by ${grew.toFixed(0)} MB at most while relaying`);
});

t.test('a client that stops reading holds its backend back (it waits in ClientWrite), and reading again gets every row', async (t) => {
  const client = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
  await client.connect();
  t.teardown(() => client.end().catch(() => {}));
  const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  const socket = (client as unknown as { connection: { stream: Duplex } }).connection.stream;
  socket.pause();
  // 64 MB of answer: far beyond what the sockets' buffers hold, so the backend can only finish if someone reads.
  const answer = client.query("SELECT repeat('x', 1000000) AS body FROM generate_series(1, 64)");
  const backendState = () => psql(f.conninfo(a), `SELECT state || ' ' || coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = ${pid}`);
  await until('the backend waits for its client to read', async () => (await backendState()) === 'active ClientWrite', 20_000);
  // A gateway that read on regardless would take the rest into its own memory within this second, and the backend would be done.
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(await backendState(), 'active ClientWrite', 'and still waits a second later: the gateway reads no more than the client takes');
  socket.resume();
  const { rows } = await answer;
  t.equal(rows.length, 64, 'every row arrives once the client reads');
  t.ok(rows.every((r) => r.body.length === 1_000_000), 'whole');
});
