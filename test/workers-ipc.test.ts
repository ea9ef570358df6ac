// The IPC between the primary and its workers, over a real forked process's channel: what one side
// sends in a turn crosses as one message, in order.
import { type ChildProcess, fork } from 'node:child_process';
import type { Test } from 'tap';
import t from 'tap';
import { type IpcChannel, IpcPeer } from '../src/workers/ipc.ts';

/** A forked process running an IpcPeer (test/fixtures/ipc-peer-child.ts), and our end counting what it sends. */
function peerProcess(t: Test): { peer: IpcPeer; sent: () => number } {
  const child: ChildProcess = fork(new URL('./fixtures/ipc-peer-child.ts', import.meta.url), {
    execArgv: ['--import', new URL('../bin/load-ts.mjs', import.meta.url).href],
  });
  t.teardown(() => void child.disconnect());
  let sent = 0;
  const channel: IpcChannel = { send: (m) => (sent++, child.send(m as object)), on: (event, listener) => child.on(event, listener) };
  return { peer: new IpcPeer(channel, 'w1'), sent: () => sent };
}

t.test('calls and notes of one turn cross as one message, applied in the order sent', async (t) => {
  const { peer, sent } = peerProcess(t);
  peer.notify('log', 1);
  const sums = Promise.all([peer.call('add', { x: 1, y: 2 }), peer.call('add', { x: 3, y: 4 })]);
  peer.notify('log', 2);
  t.same(await sums, [3, 7], 'each call gets its own answer');
  t.equal(sent(), 1, 'we sent one message for four');
  const report = await peer.call<{ seen: string[]; sent: number }>('report');
  t.same(report.seen, ['note 1', 'call 1+2', 'call 3+4', 'note 2'], 'the other end applied them in the order sent');
  t.equal(report.sent, 1, 'it answered both calls in one message');
  await t.rejects(peer.call('fail'), /no such database/, 'an error crosses as its message');
  t.equal(sent(), 3, 'a call of a later turn is a message of its own');
});

t.test('a closed peer fails its waiting calls and sends nothing more', async (t) => {
  const { peer, sent } = peerProcess(t);
  const waiting = peer.call('slow');
  await new Promise((r) => setImmediate(r));
  peer.close();
  await t.rejects(waiting, /the gateway process is restarting/);
  peer.notify('log', 1);
  await new Promise((r) => setImmediate(r));
  t.equal(sent(), 1, 'nothing was sent after close');
});

// No real channel can be made to throw on send at will: this one stands in for one that is gone.
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
