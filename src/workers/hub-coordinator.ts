import type { WindowCount } from '../limits/window-counters.ts';
import { MemoryCoordinator } from '../coord/memory-coordinator.ts';
import type { Coordinator, HeldLock, Message } from '../coord/coordinator.ts';
import type { IpcPeer } from './ipc.ts';

/**
 * The primary's coordinator when it runs proxy workers without Redis: the in-process one, served
 * to each worker over IPC (src/workers/ipc-coordinator.ts), so workers share what gateways of a
 * fleet share through Redis: auth-failure windows, cancel keys, session counts per database, quota
 * flags, and every message (route invalidations, usage flushes, cancels). Each worker is a
 * gateway of its own here (its gateway id), and what it held or counted goes when it dies.
 */
export class HubCoordinator implements Coordinator {
  readonly shared = true;
  readonly listening = true;
  private readonly inner: MemoryCoordinator;
  /** key → holder → its share */
  private readonly shares = new Map<string, Map<string, number>>();
  /** holder → the keys it holds */
  private readonly heldBy = new Map<string, Set<string>>();
  private readonly workers = new Set<IpcPeer>();

  constructor(readonly gatewayId: string) {
    this.inner = new MemoryCoordinator(gatewayId);
  }

  /** Serves one worker; forget(peer.id) once it is gone. */
  attach(peer: IpcPeer): void {
    this.workers.add(peer);
    const w = peer.id;
    peer.handle('coord.increment', ({ key, windowMs }) => this.inner.increment(key, windowMs));
    peer.handle('coord.get', ({ key }) => this.inner.get(key));
    peer.handle('coord.hold', ({ key, value }) => this.holdFor(w, key, value));
    // One-way notes, not calls: nothing waits on their answer, and the channel keeps their order
    // before any later call of the same worker (a `total` after its `setShare`).
    peer.onNote('coord.drop', ({ key }) => void this.dropFor(w, key));
    peer.handle('coord.lookup', ({ key }) => this.inner.lookup(key));
    peer.onNote('coord.setShare', ({ key, value }) => void this.setShareFor(w, key, value));
    peer.handle('coord.total', ({ key }) => this.total(key));
    peer.onNote('coord.setFlag', ({ key, value, ttlMs }) => void this.inner.setFlag(key, value, ttlMs));
    peer.handle('coord.getFlag', ({ key }) => this.inner.getFlag(key));
    peer.onNote('coord.clearFlag', ({ key }) => void this.inner.clearFlag(key));
    peer.onNote('coord.publish', ({ channel, message }) => void this.publish(channel, message));
  }

  /** A worker is gone: its cancel keys and session counts with it. */
  forget(peer: IpcPeer): void {
    this.workers.delete(peer);
    for (const key of this.heldBy.get(peer.id) ?? []) void this.inner.drop(key);
    this.heldBy.delete(peer.id);
    for (const [key, byHolder] of this.shares) {
      byHolder.delete(peer.id);
      if (byHolder.size === 0) this.shares.delete(key);
    }
  }

  increment(key: string, windowMs: number): Promise<WindowCount> {
    return this.inner.increment(key, windowMs);
  }

  get(key: string): Promise<WindowCount> {
    return this.inner.get(key);
  }

  hold(key: string, value: string): Promise<boolean> {
    return this.holdFor(this.gatewayId, key, value);
  }

  private async holdFor(holder: string, key: string, value: string): Promise<boolean> {
    if (!(await this.inner.hold(key, value))) return false;
    let keys = this.heldBy.get(holder);
    if (!keys) this.heldBy.set(holder, keys = new Set());
    keys.add(key);
    return true;
  }

  drop(key: string): Promise<void> {
    return this.dropFor(this.gatewayId, key);
  }

  private async dropFor(holder: string, key: string): Promise<void> {
    const keys = this.heldBy.get(holder);
    if (!keys?.delete(key)) return;
    await this.inner.drop(key);
  }

  lookup(key: string): Promise<string | undefined> {
    return this.inner.lookup(key);
  }

  setShare(key: string, value: number): Promise<void> {
    return this.setShareFor(this.gatewayId, key, value);
  }

  private async setShareFor(holder: string, key: string, value: number): Promise<void> {
    let byHolder = this.shares.get(key);
    if (value === 0) {
      byHolder?.delete(holder);
      if (byHolder?.size === 0) this.shares.delete(key);
      return;
    }
    if (!byHolder) this.shares.set(key, byHolder = new Map());
    byHolder.set(holder, value);
  }

  async total(key: string): Promise<number> {
    let sum = 0;
    for (const v of this.shares.get(key)?.values() ?? []) sum += v;
    return sum;
  }

  setFlag(key: string, value: string, ttlMs: number): Promise<void> {
    return this.inner.setFlag(key, value, ttlMs);
  }

  getFlag(key: string): Promise<string | undefined> {
    return this.inner.getFlag(key);
  }

  clearFlag(key: string): Promise<void> {
    return this.inner.clearFlag(key);
  }

  /** Locks are the primary's alone (wakes run there). */
  tryLock(name: string, leaseMs: number): Promise<HeldLock | undefined> {
    return this.inner.tryLock(name, leaseMs);
  }

  /** To the primary's own subscribers and to every worker. */
  async publish(channel: string, message: Message): Promise<void> {
    await this.inner.publish(channel, message);
    for (const peer of this.workers) peer.notify('coord.message', { channel, message });
  }

  subscribe(channel: string, handler: (message: Message) => void): void {
    this.inner.subscribe(channel, handler);
  }

  onReconnect(): void {
    // The primary and its workers never lose each other's messages while both live.
  }

  async close(): Promise<void> {
    await this.inner.close();
  }
}
