// The fair connection caps every listener shares (src/limits/fair-caps.ts), on their own.
import t from 'tap';
import { FairCaps } from '../src/limits/fair-caps.ts';

t.test('per address, in total, and the tenth kept for addresses that hold little', async (t) => {
  const caps = new FairCaps({ total: 100, perAddress: 30 }, 'connections');
  t.equal(caps.sharedRoom, 90);
  const take = (address: string, n: number) => Array.from({ length: n }, () => caps.take(address)).filter((p) => p.ok).length;
  t.equal(take('10.0.0.1', 40), 30, 'one address gets its per-address cap');
  t.equal(take('10.0.0.2', 40), 30);
  t.equal(take('10.0.0.3', 40), 30, 'three addresses fill the shared room');
  t.match(caps.take('10.0.0.3'), { ok: false, reason: /too many connections from this address/ });
  t.match(caps.take('10.0.0.4'), { ok: true }, 'a new address still gets in');
  t.match(caps.take('10.0.0.4'), { ok: false, reason: /the room left is kept for other addresses/ }, 'but only its small share of the kept room');
  t.equal(take('10.0.1.0', 1) + take('10.0.1.1', 1), 2, 'and so does the next one');
});

t.test('an IPv6 /64 counts as one address; exempt holders skip the per-address rules, never the total', async (t) => {
  const caps = new FairCaps({ total: 10, perAddress: 2 }, 'connections');
  t.ok(caps.take('2001:db8:1:2::1').ok);
  t.ok(caps.take('2001:db8:1:2:ffff::9').ok);
  t.match(caps.take('2001:db8:1:2::abcd'), { ok: false, reason: /from this address/ }, 'a third address of the same /64');
  t.ok(caps.take('2001:db8:1:3::1').ok, 'another /64');
  const proxy = Array.from({ length: 8 }, () => caps.take('192.0.2.1', true));
  t.equal(proxy.filter((p) => p.ok).length, 7, 'an exempt holder takes what the total leaves');
  t.match(caps.take('192.0.2.1', true), { ok: false, reason: 'too many connections' });
  for (const p of proxy) if (p.ok) p.release();
  t.equal(caps.count, 3, 'released places are free again');
});
