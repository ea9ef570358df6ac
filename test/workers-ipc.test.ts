// The IPC between the primary and its workers: what one side sends in a turn crosses as one message, in order.
import { EventEmitter } from 'node:events';
import t from 'tap';
import { type IpcChannel, IpcPeer } from '../src/workers/ipc.ts';

/** Two ends of a channel that, like the cluster's pipe, deliver a copy of each message on a later turn. */
function channelPair(): { a: IpcChannel; b: IpcChannel; sent: { a: number; b: number } } {
  const ends = { a: new EventEmitter(), b: new EventEmitter() };
  const sent = { a: 0, b: 0 };
  const end = (self: 'a' | 'b', other: 'a' | 'b'): IpcChannel => ({
    send: (m) => {
      sent[self]++;
      const copy = JSON.parse(JSON.stringify(m));
      setImmediate(() => ends[other].emit('message', copy));
      return true;
    },
    on: (event, listener) => ends[self].on(event, listener),
  });
  return { a: end('a', 'b'), b: end('b', 'a'), sent };
}

t.test('calls and notes of one turn cross as one message, applied in the order sent', async (t) => {
  const { a, b, sent } = channelPair();
  const worker = new IpcPeer(a, 'w1');
  const primary = new IpcPeer(b, 'w1');
  const seen: string[] = [];
  primary.onNote('log', (x) => seen.push(`note ${x}`));
  primary.handle('add', ({ x, y }) => (seen.push(`call ${x}+${y}`), x + y));
  primary.handle('fail', () => {
    throw new Error('no such database');
  });
  worker.notify('log', 1);
  const sums = Promise.all([worker.call('add', { x: 1, y: 2 }), worker.call('add', { x: 3, y: 4 })]);
  worker.notify('log', 2);
  t.same(await sums, [3, 7], 'each call gets its own answer');
  t.same(seen, ['note 1', 'call 1+2', 'call 3+4', 'note 2'], 'the primary applied them in the order sent');
  t.equal(sent.a, 1, 'the worker sent one message for four');
  t.equal(sent.b, 1, 'the primary answered both calls in one message');
  await t.rejects(worker.call('fail'), /no such database/, 'an error crosses as its message');
  t.equal(sent.a, 2, 'a call of a later turn is a message of its own');
});

t.test('a closed peer fails its waiting calls and sends nothing more', async (t) => {
  const { a, b, sent } = channelPair();
  const worker = new IpcPeer(a, 'w1');
  new IpcPeer(b, 'w1').handle('slow', () => new Promise(() => {}));
  const waiting = worker.call('slow');
  await new Promise((r) => setImmediate(r));
  worker.close();
  await t.rejects(waiting, /the gateway process is restarting/);
  worker.notify('log', 1);
  await new Promise((r) => setImmediate(r));
  t.equal(sent.a, 1, 'nothing was sent after close');
});

t.test('a channel that cannot send any more fails the calls waiting on it', async (t) => {
  const broken: IpcChannel = {
    send: () => {
      throw new Error('channel closed');
    },
    on: () => undefined,
  };
  const worker = new IpcPeer(broken, 'w1');
  await t.rejects(worker.call('lease.acquire', {}), /the gateway process is restarting/, 'the call fails, nothing is thrown out of the turn');
  await t.rejects(worker.call('lease.acquire', {}), /the gateway process is restarting/, 'and so do later ones');
});
