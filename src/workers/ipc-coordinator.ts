import { EventEmitter } from 'node:events';
import type { WindowCount } from '../limits/window-counters.ts';
import type { Coordinator, HeldLock, Message } from '../coord/coordinator.ts';
import type { IpcPeer } from './ipc.ts';

/**
 * A proxy worker's coordinator without Redis: every call answered by the primary's
 * HubCoordinator, so the workers of one process share state as the gateways of a fleet do.
 */
export class IpcCoordinator implements Coordinator {
  readonly shared = true;
  readonly listening = true;
  private readonly bus = new EventEmitter();

  constructor(private readonly peer: IpcPeer) {
    this.bus.setMaxListeners(0);
    peer.onNote('coord.message', ({ channel, message }) => this.bus.emit(channel, message));
  }

  get gatewayId(): string {
    return this.peer.id;
  }

  increment(key: string, windowMs: number): Promise<WindowCount> {
    return this.peer.call('coord.increment', { key, windowMs });
  }

  get(key: string): Promise<WindowCount> {
    return this.peer.call('coord.get', { key });
  }

  hold(key: string, value: string): Promise<boolean> {
    return this.peer.call('coord.hold', { key, value });
  }

  // Notes (no answer awaited): the primary applies them in order, before any later call of this worker.
  async drop(key: string): Promise<void> {
    this.peer.notify('coord.drop', { key });
  }

  lookup(key: string): Promise<string | undefined> {
    return this.peer.call<string | null | undefined>('coord.lookup', { key }).then((v) => v ?? undefined);
  }

  async setShare(key: string, value: number): Promise<void> {
    this.peer.notify('coord.setShare', { key, value });
  }

  total(key: string): Promise<number> {
    return this.peer.call('coord.total', { key });
  }

  async setFlag(key: string, value: string, ttlMs: number): Promise<void> {
    this.peer.notify('coord.setFlag', { key, value, ttlMs });
  }

  getFlag(key: string): Promise<string | undefined> {
    return this.peer.call<string | null | undefined>('coord.getFlag', { key }).then((v) => v ?? undefined);
  }

  async clearFlag(key: string): Promise<void> {
    this.peer.notify('coord.clearFlag', { key });
  }

  /** Wakes (the only lock holders) run in the primary. */
  async tryLock(): Promise<HeldLock | undefined> {
    throw new Error('locks are taken by the primary, not by proxy workers');
  }

  async publish(channel: string, message: Message): Promise<void> {
    this.peer.notify('coord.publish', { channel, message });
  }

  subscribe(channel: string, handler: (message: Message) => void): void {
    this.bus.on(channel, handler);
  }

  onReconnect(): void {
    // A worker whose primary is gone is gone too.
  }

  async close(): Promise<void> {
    this.bus.removeAllListeners();
  }
}
