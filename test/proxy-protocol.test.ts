import net from 'node:net';
import pg from 'pg';
import t from 'tap';
import { startProxyFixture } from './proxy-helpers.ts';

const f = await startProxyFixture({ PGFLEET_ALLOW_PLAINTEXT: 'true' }, {
  authLimits: { perAddress: 1e9, slowTargetAfter: 1e9 },
  handshakeTimeoutMs: 3000,
});
t.teardown(() => f.stop());
const a = await f.createDatabase();
const port = f.proxy.port;

const int32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };
const packet = (...parts: Buffer[]) => { const body = Buffer.concat(parts); return Buffer.concat([int32(body.length + 4), body]); };
const typed = (type: string, body: Buffer) => Buffer.concat([Buffer.from(type), int32(body.length + 4), body]);
const params = (p: Record<string, string>) => Buffer.from(`${Object.entries(p).map(([k, v]) => `${k}\0${v}\0`).join('')}\0`);
const startup = (p: Record<string, string>, minor = 0) => packet(int32((3 << 16) | minor), params(p));
const goodParams = { user: a.role, database: 'app', options: `endpoint=${a.endpointId}` };

/** Sends bytes, half-closes when asked, and collects everything until the proxy closes. */
function exchange(data: Buffer[], opts: { end?: boolean; timeoutMs?: number } = {}): Promise<{ reply: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reply: Buffer.concat(chunks), closed: false });
    }, opts.timeoutMs ?? 10_000);
    socket.on('connect', () => {
      for (const d of data) socket.write(d);
      if (opts.end !== false) socket.end();
    });
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks), closed: true });
    });
  });
}

/** The SQLSTATE of the first ErrorResponse in a reply. */
function sqlstateOf(reply: Buffer): string | undefined {
  const at = reply.indexOf('E');
  if (at < 0) return undefined;
  const m = /C([0-9A-Z]{5})\0/.exec(reply.subarray(at).toString('latin1'));
  return m?.[1];
}

t.test('GSSENCRequest is refused with N and the client may go on', async (t) => {
  const { reply } = await exchange([packet(int32(80877104)), startup({ user: a.role, database: 'app' })]);
  t.equal(reply.toString('latin1', 0, 1), 'N');
  t.equal(sqlstateOf(reply.subarray(1)), '08004', 'then the startup is answered (no endpoint named)');
});

t.test('a newer minor version gets NegotiateProtocolVersion; auth goes on', async (t) => {
  const { reply } = await exchange([startup({ ...goodParams, '_pq_.frob': 'on' }, 2)], { end: false, timeoutMs: 1000 });
  t.equal(reply.toString('latin1', 0, 1), 'v');
  t.equal(reply.readUInt32BE(5), 3 << 16, 'newest supported: 3.0');
  t.equal(reply.readUInt32BE(9), 1);
  t.equal(reply.toString('latin1', 13, 13 + '_pq_.frob'.length), '_pq_.frob');
  const auth = reply.subarray(reply.readUInt32BE(1) + 1);
  t.equal(auth.toString('latin1', 0, 1), 'R');
  t.equal(auth.readUInt32BE(5), 10, 'then AuthenticationSASL');
});

t.test('an unknown major version and malformed packets end with the standard errors, an oversized one silently', async (t) => {
  t.equal(sqlstateOf((await exchange([packet(int32(2 << 16), params({ user: 'x' }))])).reply), '0A000');
  // A startup length out of range is not a Postgres client: closed without an answer, as by Postgres.
  const big = await exchange([Buffer.concat([int32(10_001), int32(3 << 16), Buffer.alloc(10_000, 0x61)])]);
  t.equal(big.reply.length, 0);
  t.ok(big.closed);
  t.equal(sqlstateOf((await exchange([packet(int32(3 << 16), Buffer.from('user\0x'))])).reply), '08P01', 'no terminator');
  t.equal(sqlstateOf((await exchange([packet(int32(3 << 16), params({ database: 'x' }))])).reply), '28000', 'no user');
  t.equal(sqlstateOf((await exchange([packet(int32(80877102), int32(1))])).reply), '08P01', 'short cancel request');
  const unknownCancel = await exchange([packet(int32(80877102), int32(12345), int32(678))]);
  t.equal(unknownCancel.reply.length, 0, 'an unknown cancel key is dropped silently');
  t.ok(unknownCancel.closed);
});

// ---- fuzz ----

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.PGFLEET_FUZZ_SEED ?? 20261123);
const CASES = 10_000;

function fuzzCase(rand: () => number): { data: Buffer[]; end: boolean } {
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const cut = (b: Buffer) => b.subarray(0, int(b.length));
  const good = startup(goodParams);
  const scramFirst = (data: string, mech = 'SCRAM-SHA-256') => typed('p', Buffer.concat([Buffer.from(`${mech}\0`), int32(data.length), Buffer.from(data)]));
  switch (int(12)) {
    case 0: return { data: [bytes(int(64))], end: true };
    case 1: return { data: [cut(good)], end: true };
    case 2: return { data: [Buffer.concat([int32(10_001 + int(2 ** 31)), bytes(int(200))])], end: int(2) === 0 };
    case 3: return { data: [int32(int(8))], end: true };
    case 4: { const b = Buffer.from(good); for (let i = 0; i < 4; i++) b[8 + int(b.length - 8)] = int(256); return { data: [b], end: true }; }
    case 5: return { data: [good, typed('p', bytes(int(100)))], end: true };
    case 6: return { data: [good, Buffer.concat([Buffer.from('p'), int32(20_000 + int(2 ** 31)), bytes(int(50))])], end: int(2) === 0 };
    case 7: return { data: [good, scramFirst(['n,,n=,r=', 'p=x,,n=,r=a', 'y,a=b,n=,r=x', 'n,,m=1,r=x', 'garbage', ''][int(6)]!)], end: true };
    case 8: return { data: [good, scramFirst('n,,n=,r=abc', ['SCRAM-SHA-256-PLUS', 'MD5', ''][int(3)]!)], end: true };
    case 9: return { data: [good, scramFirst('n,,n=,r=abcdef'), typed('p', Buffer.from(['c=biws,r=x,p=AAAA', 'c=,p=', '', 'r=abcdef'][int(4)]!))], end: true };
    case 10: return { data: [packet(int32(80877103)), bytes(int(300))], end: true };
    default: return { data: [cut(Buffer.concat([good, scramFirst('n,,n=,r=zzz')]))], end: int(4) !== 0 };
  }
}

t.test(`fuzz: ${CASES} malformed, truncated and oversized startup and auth messages (seed ${SEED})`, async (t) => {
  // A well-behaved client keeps working throughout: one long session and fresh connections.
  const steady = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
  await steady.connect();
  let stop = false;
  let goodQueries = 0;
  const wellBehaved = (async () => {
    while (!stop) {
      t.equal((await steady.query('SELECT 1 AS one')).rows[0].one, 1);
      const fresh = new pg.Client({ connectionString: a.uriNoSni.replace('sslmode=require', 'sslmode=no-verify') });
      await fresh.connect();
      await fresh.query('SELECT 1');
      await fresh.end();
      goodQueries++;
    }
  })();

  const rand = mulberry32(SEED);
  const cases = Array.from({ length: CASES }, () => fuzzCase(rand));
  const rssBefore = process.memoryUsage().rss;
  let hung = 0;
  let crashedReplies = 0;
  let next = 0;
  await Promise.all(Array.from({ length: 40 }, async () => {
    while (next < cases.length) {
      const c = cases[next++]!;
      const { reply, closed } = await exchange(c.data, { end: c.end, timeoutMs: 8000 });
      if (!closed) hung++;
      const state = sqlstateOf(reply);
      if (state === 'XX000') crashedReplies++;
    }
  }));
  stop = true;
  await wellBehaved;
  const grew = (process.memoryUsage().rss - rssBefore) / 1048576;
  t.equal(hung, 0, 'the proxy closed every malformed connection itself');
  t.equal(crashedReplies, 0, 'no internal errors');
  t.ok(goodQueries > 0, `the well-behaved client completed ${goodQueries} connections meanwhile`);
  t.equal((await steady.query('SELECT 2 AS two')).rows[0].two, 2, 'its long session survived');
  await steady.end();
  t.ok(grew < 150, `memory stayed bounded (rss grew ${grew.toFixed(0)} MB)`);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(f.proxy.sessions.size, 0, 'no session left behind');
});
