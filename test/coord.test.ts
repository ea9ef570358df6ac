import pino from 'pino';
import t from 'tap';
import type { Message } from '../src/coord/coordinator.ts';
import { MemoryCoordinator } from '../src/coord/memory-coordinator.ts';
import { RedisCoordinator } from '../src/coord/redis-coordinator.ts';
import { until } from './helpers.ts';
import { type RedisServer, startRedis } from './redis-server.ts';

const log = pino({ level: 'silent' });

t.test('memory coordinator: windows, held values, shares, a lock with a lease and growing tokens', async (t) => {
  const c = new MemoryCoordinator('solo');
  t.same((await c.increment('k', 1000)).count, 1);
  t.same((await c.increment('k', 1000)).count, 2);
  t.equal((await c.get('k')).count, 2);
  t.ok(await c.hold('cancel:1', 'solo 7'));
  t.notOk(await c.hold('cancel:1', 'solo 8'), 'a held key is not given twice');
  await c.setShare('sessions:db', 2);
  t.equal(await c.total('sessions:db'), 2);
  const first = await c.tryLock('wake:x', 100);
  t.ok(first);
  t.equal(await c.tryLock('wake:x', 100), undefined, 'held');
  await until('the lease to end', async () => !(await first!.stillHeld()));
  const second = await c.tryLock('wake:x', 100);
  t.ok(second && second.token > first!.token, 'the next holder has a larger token');
  await first!.release();
  t.ok(await second!.stillHeld(), 'a stale holder cannot release the new holder\'s lock');
  const got = new Promise<Message>((resolve) => c.subscribe('invalidate', resolve));
  await c.publish('invalidate', { type: 'x' });
  t.same(await got, { type: 'x' });
  t.ok(c.listening, 'in process nothing is ever missed');
});

t.test('redis coordinator: two gateways share counters, keys, shares, locks and messages; Redis lost and back', async (t) => {
  const redis: RedisServer = await startRedis();
  t.teardown(() => redis.kill());
  const a = await RedisCoordinator.open(redis.url, 'gw-a', log);
  const b = await RedisCoordinator.open(redis.url, 'gw-b', log);
  const c = await RedisCoordinator.open(redis.url, 'gw-c', log);
  t.teardown(() => Promise.all([a.close(), b.close(), c.close()]));
  t.ok(a.shared);

  await a.increment('auth:a:1.2.3.4', 60_000);
  await b.increment('auth:a:1.2.3.4', 60_000);
  const w = await a.get('auth:a:1.2.3.4');
  t.equal(w.count, 2, 'failures on A and B count as one window');
  t.ok(w.resetInMs > 0 && w.resetInMs <= 60_000);

  t.ok(await a.hold('cancel:42', 'gw-a 99'));
  t.notOk(await b.hold('cancel:42', 'gw-b 1'), 'a cancel key is unique in the fleet');
  t.equal(await b.lookup('cancel:42'), 'gw-a 99', 'B finds the key A holds');

  await a.setShare('sessions:db1', 2);
  await b.setShare('sessions:db1', 3);
  t.equal(await c.total('sessions:db1'), 5, 'shares add up');
  await b.setShare('sessions:db1', 0);
  t.equal(await c.total('sessions:db1'), 2);

  await a.setFlag('quota:db1', 'used up', 60_000);
  t.equal(await b.getFlag('quota:db1'), 'used up');
  await b.clearFlag('quota:db1');
  t.equal(await a.getFlag('quota:db1'), undefined);

  const held = await a.tryLock('wake:br1', 300);
  t.ok(held, 'A takes the wake lock');
  t.equal(await b.tryLock('wake:br1', 300), undefined, 'B waits while A holds it');
  // A "dies" holding it: nobody releases; the lease ends and B takes over with a larger token.
  await until('the lease of a dead holder to end', async () => (await b.tryLock('wake:br1', 5000).then(async (l) => {
    if (l) {
      t.ok(l.token > held!.token, 'fencing: the new holder\'s token is larger');
      await held!.release(); // the stale holder's release must not free B's lock
      t.ok(await l.stillHeld(), 'a stale release does not free the new holder\'s lock');
      t.notOk(await held!.stillHeld());
      await l.release();
    }
    return l !== undefined;
  })));

  t.ok(a.listening && b.listening, 'connected gateways hear each other');
  const heard: Message[] = [];
  b.subscribe('invalidate', (m) => heard.push(m));
  let bResynced = false;
  b.onReconnect(() => (bResynced = true));
  await until('B to hear A', async () => {
    await a.publish('invalidate', { type: 'ping' });
    return heard.length > 0;
  });
  heard.length = 0;

  // Redis goes away: calls answer from each gateway's own view, at once.
  await redis.kill();
  await until('A to see Redis gone', () => (a as unknown as { redis: { status: string } }).redis.status !== 'ready');
  await until('B to know it may miss messages', () => !b.listening);
  const started = Date.now();
  t.equal((await a.increment('auth:a:5.6.7.8', 60_000)).count, 1, 'counting goes on per gateway');
  t.ok(await a.tryLock('wake:br2', 1000), 'locks are per gateway while Redis is down');
  t.equal(await a.lookup('cancel:42'), 'gw-a 99', 'A still knows its own keys');
  t.equal(await a.total('sessions:db1'), 2, 'A counts its own share');
  await a.publish('invalidate', { type: 'while-down' });
  t.ok(Date.now() - started < 5000, 'nothing waited for the lost Redis');

  // Redis comes back empty: held keys and shares are put again, the queued message goes out.
  await redis.start();
  await until('A\'s cancel key back in Redis', async () => (await c.lookup('cancel:42')) === 'gw-a 99', 20_000);
  await until('A\'s share back in Redis', async () => (await c.total('sessions:db1')) === 2, 20_000);
  await until('B to listen again', () => b.listening, 20_000);
  // B was cut off too: it hears the queued message, or at least knows it may have missed some.
  await until('B to hear the message sent while Redis was down, or resync', () => bResynced || heard.some((m) => m.type === 'while-down'), 20_000);
  const again = await b.tryLock('wake:after', 1000);
  t.ok(again, 'locks work again');
  const tokenAfter = again!.token;
  t.ok(tokenAfter > held!.token, 'tokens keep growing across a Redis that restarted empty');
  await a.drop('cancel:42');
  t.equal(await c.lookup('cancel:42'), undefined, 'a dropped key is gone');
});
