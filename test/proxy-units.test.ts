import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { makeScramVerifier } from '../src/scram-verifier.ts';
import { AuthLimiter } from '../proxy/auth-limiter.ts';
import type { Message } from '../src/coord/coordinator.ts';
import { MemoryCoordinator } from '../src/coord/memory-coordinator.ts';
import { pgfleetOptions, endpointFromPassword, endpointFromSni, endpointFromStartup } from '../proxy/endpoint.ts';
import { AuthFailed, ConnectionRefused, ProtocolViolation } from '../proxy/errors.ts';
import { Interner } from '../proxy/interner.ts';
import { ExpiringMap } from '../src/limits/expiring-map.ts';
import { parseSASLInitialResponse } from '../proxy/protocol/messages.ts';
import { ScramClient } from '../proxy/scram-client.ts';
import { type AuthIO, passwordMatches, scramServer } from '../proxy/scram.ts';
import { decodeStartup, encodeStartup } from '../proxy/protocol/startup.ts';
import { loadTlsIdentity, serverEndPoint } from '../proxy/tls-certs.ts';
import { tmpDataDir } from './helpers.ts';

t.test('interner: equal keys get the first value kept; past its cap a new generation begins', async (t) => {
  const interner = new Interner<{ n: number }>(2);
  const first = { n: 1 };
  t.equal(interner.intern('a', first), first);
  t.equal(interner.intern('a', { n: 2 }), first, 'an equal key gets the kept value, not its own');
  t.same(interner.intern('b', { n: 3 }), { n: 3 });
  const c = { n: 4 };
  t.equal(interner.intern('c', c), c, 'a third key at a cap of 2 starts a new generation');
  const again = { n: 5 };
  t.equal(interner.intern('a', again), again, 'what the old generation kept is no longer handed out');
});

t.test('expiring map: entries end after their own time, the oldest go past the bound, some can be dropped', async (t) => {
  const m = new ExpiringMap<string, number>(2);
  m.set('short', 1, 30);
  m.set('long', 2, 60_000);
  t.equal(m.get('short'), 1);
  t.ok(m.msLeft('long') > 59_000, 'an entry has its own time left');
  await new Promise((r) => setTimeout(r, 60));
  t.equal(m.get('short'), undefined, 'an ended entry is gone');
  t.equal(m.msLeft('short'), 0);
  t.equal(m.get('long'), 2, 'a longer one lives on');
  m.set('a', 3, 60_000);
  m.set('b', 4, 60_000);
  t.equal(m.get('long'), undefined, 'past the bound the entry set longest ago goes');
  t.same([m.get('a'), m.get('b')], [3, 4]);
  m.deleteWhere((v) => v === 3);
  t.same([m.get('a'), m.get('b')], [undefined, 4], 'only the matching entry is dropped');
  m.deleteWhere();
  t.equal(m.get('b'), undefined, 'without a test, every entry is dropped');
});

t.test('endpoint from SNI: only ep-… labels under the domain', async (t) => {
  t.equal(endpointFromSni('ep-quiet-river-042817.db.example.com', 'db.example.com'), 'ep-quiet-river-042817');
  t.equal(endpointFromSni('EP-Quiet-River-042817.DB.example.com.', 'db.example.com'), 'ep-quiet-river-042817');
  t.equal(endpointFromSni('localhost', 'localhost'), undefined);
  t.equal(endpointFromSni('www.db.example.com', 'db.example.com'), undefined);
  t.equal(endpointFromSni('ep-a.evil.com', 'db.example.com'), undefined);
  t.equal(endpointFromSni('ep-a.b.db.example.com', 'db.example.com'), undefined, 'one label only');
  t.equal(endpointFromSni(undefined, 'x'), undefined);
});

t.test('endpoint from options keeps the rest, escapes included', async (t) => {
  t.same(pgfleetOptions('endpoint=ep-a-b-1 -c search_path=x'), { endpoint: 'ep-a-b-1', jwt: false, rest: '-c search_path=x' });
  t.same(pgfleetOptions('auth=jwt -c geqo=off'), { endpoint: undefined, jwt: true, rest: '-c geqo=off' });
  t.same(pgfleetOptions('-c application_name=a\\ b --endpoint=ep-a-b-1'), { endpoint: 'ep-a-b-1', jwt: false, rest: '-c application_name=a\\ b' });
  t.same(pgfleetOptions('-c geqo=off'), { endpoint: undefined, jwt: false, rest: '-c geqo=off' });
  t.throws(() => pgfleetOptions('endpoint=bogus'), ConnectionRefused);
  t.throws(() => pgfleetOptions('endpoint=ep-a-1 endpoint=ep-b-2'), /two different endpoints/);
  t.throws(() => endpointFromStartup('ep-a-1', 'ep-b-2'), /names endpoint "ep-a-1" but options name "ep-b-2"/);
  t.equal(endpointFromStartup(undefined, 'ep-b-2'), 'ep-b-2');
  t.same(endpointFromPassword('endpoint=ep-a-1;pa;ss'), { endpoint: 'ep-a-1', password: 'pa;ss' });
  t.equal(endpointFromPassword('plain-password'), undefined);
});

t.test('startup packets round-trip; bad ones are typed errors', async (t) => {
  const params = new Map([['user', 'alice'], ['database', 'app'], ['application_name', 'x']]);
  const packet = encodeStartup(params);
  const decoded = decodeStartup(packet.subarray(4));
  t.match(decoded, { kind: 'startup', minor: 0, protocolOptions: [] });
  t.same(decoded.kind === 'startup' && [...decoded.params], [...params]);
  t.throws(() => decodeStartup(Buffer.from([0, 3, 0, 0, 0x75, 0x73, 0x65, 0x72])), ProtocolViolation);
  t.throws(() => decodeStartup(Buffer.from([0, 1, 0, 0, 0])), /unsupported frontend protocol 1.0/);
});

/** Connects a ScramClient (as the compute-side client) to scramServer in memory. */
async function exchange(password: string, verifier: string | undefined): Promise<void> {
  const client = new ScramClient(password);
  const toServer: Buffer[] = [];
  let waiting: ((b: Buffer) => void) | undefined;
  const push = (b: Buffer) => (waiting ? (waiting(b), (waiting = undefined)) : toServer.push(b));
  const io: AuthIO = {
    send: (m) => {
      const code = m.readUInt32BE(5);
      const data = m.subarray(9).toString();
      if (code === 10) {
        const mech = 'SCRAM-SHA-256';
        const first = Buffer.from(client.clientFirst);
        const len = Buffer.alloc(4);
        len.writeUInt32BE(first.length);
        push(Buffer.concat([Buffer.from(`${mech}\0`), len, first]));
      } else if (code === 11) {
        client.respond(data).then((final) => push(Buffer.from(final)));
      }
    },
    read: async () => toServer.shift() ?? new Promise<Buffer>((r) => (waiting = r)),
  };
  const final = await scramServer(io, 'alice', verifier, undefined);
  client.verify(final.subarray(9).toString());
}

t.test('SCRAM: our client and server agree; wrong password and unknown role fail alike', async (t) => {
  const verifier = await makeScramVerifier('s3cret');
  await exchange('s3cret', verifier);
  await t.rejects(exchange('wrong', verifier), AuthFailed);
  await t.rejects(exchange('s3cret', undefined), AuthFailed);
  t.equal(await passwordMatches(verifier, 's3cret'), true);
  t.equal(await passwordMatches(verifier, 's3cre'), false);
  t.equal(await passwordMatches(undefined, 's3cret'), false);
  t.throws(() => parseSASLInitialResponse(Buffer.from('SCRAM-SHA-256\0\0\0\0\x09abc')), ProtocolViolation);
});

t.test('auth limiter: an address is refused, a target only slowed, windows reset', async (t) => {
  const limiter = new AuthLimiter({ perAddress: 2, slowTargetAfter: 3, slowFailureMs: 50, windowMs: 300 });
  await limiter.failed('ep-a-1', '10.0.0.1');
  await limiter.failed('ep-a-1', '10.0.0.1');
  await t.rejects(limiter.check('10.0.0.1'), /from this address/);
  await t.rejects(limiter.check('::ffff:10.0.0.1'), /from this address/, 'the IPv4-mapped form is the same address');
  await limiter.failed('ep-a-1', '2001:db8:1:2::1');
  await limiter.failed('ep-b-2', '2001:db8:1:2::2');
  await t.rejects(limiter.check('2001:db8:1:2::ffff'), /from this address/, 'one IPv6 /64 is one address');
  await t.resolves(limiter.check('2001:db8:1:3::1'), 'the next /64 is another');
  await limiter.failed('ep-a-1', '10.0.0.2');
  await t.resolves(limiter.check('10.0.0.3'), 'many failures against one endpoint refuse no one else');
  await new Promise((r) => setTimeout(r, 350));
  await t.resolves(limiter.check('10.0.0.1'), 'a new window');
});

t.test('auth limiter: a refusal reaches every limiter of the store as a message; checks read no counter', async (t) => {
  const store = new MemoryCoordinator('g');
  let reads = 0;
  const view = (listening: boolean, hears: boolean) => ({
    listening,
    increment: (key: string, windowMs: number) => store.increment(key, windowMs),
    get: (key: string) => (reads++, store.get(key)),
    publish: (channel: string, m: Message) => store.publish(channel, m),
    subscribe: (channel: string, fn: (m: Message) => void) => (hears ? store.subscribe(channel, fn) : undefined),
  });
  const limits = { perAddress: 2, slowTargetAfter: 100, slowFailureMs: 0, windowMs: 60_000 };
  const a = new AuthLimiter(limits, view(true, true));
  const b = new AuthLimiter(limits, view(true, true));
  await a.failed('ep-a-1', '10.0.0.1');
  await t.resolves(b.check('10.0.0.1'), 'one failure refuses no one');
  await b.failed('ep-a-1', '10.0.0.1');
  await t.rejects(b.check('10.0.0.1'), /from this address/, 'the limiter that saw the limit refuses at once');
  await new Promise((r) => setImmediate(r)); // messages arrive on a later turn
  await t.rejects(a.check('10.0.0.1'), /from this address; try again in 60 s/, 'failures on two limiters count as one: the other refuses');
  await t.resolves(a.check('10.0.0.2'), 'another address is let through');
  t.equal(reads, 0, 'no check read the shared counters');
  const deaf = new AuthLimiter(limits, view(false, false));
  await t.rejects(deaf.check('10.0.0.1'), /from this address/, 'a limiter that cannot hear messages reads the counters instead');
  t.equal(reads, 1);
});

t.test('TLS identity: generated once and reused, reissued for a new domain, or taken from config', async (t) => {
  const dataDir = tmpDataDir('pgfleet-tls');
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const first = await loadTlsIdentity({ dataDir, domain: 'db.example.com' });
  t.equal(first.caPath, path.join(dataDir, 'tls', 'ca.crt'));
  t.equal(fs.statSync(path.join(dataDir, 'tls', 'ca.key')).mode & 0o777, 0o600, 'keys are private');
  const again = await loadTlsIdentity({ dataDir, domain: 'db.example.com' });
  t.equal(again.cert, first.cert, 'reused on restart');
  t.equal(serverEndPoint(again.cert).length, 32, 'tls-server-end-point is a SHA-256 hash for an ECDSA-SHA256 certificate');
  const moved = await loadTlsIdentity({ dataDir, domain: 'db.example.org' });
  t.not(moved.cert, first.cert, 'a new domain gets a new certificate');
  t.equal(fs.readFileSync(moved.caPath!, 'utf8'), fs.readFileSync(first.caPath!, 'utf8'), 'from the same CA');
  const certFile = path.join(dataDir, 'tls', 'server.crt');
  const keyFile = path.join(dataDir, 'tls', 'server.key');
  const configured = await loadTlsIdentity({ dataDir, domain: 'x', certFile, keyFile });
  t.same(configured, { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8'), caPath: undefined });
});
