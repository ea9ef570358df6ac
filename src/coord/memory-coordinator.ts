import { EventEmitter } from 'node:events';
import { MemoryWindowCounters, type WindowCount } from '../limits/window-counters.ts';
import type { Coordinator, HeldLock, Message } from './coordinator.ts';

/**
 * In-process coordination: one gateway alone, or the fallback of the Redis coordinator while
 * Redis is unreachable (then it holds this gateway's own view only).
 */
export class MemoryCoordinator implements Coordinator {
  readonly shared = false;
  readonly listening = true;
  private readonly windows = new MemoryWindowCounters();
  private readonly held = new Map<string, string>();
  private readonly shares = new Map<string, number>();
  private readonly flags = new Map<string, { value: string; expiresAt: number }>();
  private readonly locks = new Map<string, { token: number; expiresAt: number }>();
  private readonly fences = new Map<string, number>();
  private readonly bus = new EventEmitter();

  constructor(readonly gatewayId: string) {
    this.bus.setMaxListeners(0);
  }

  increment(key: string, windowMs: number): Promise<WindowCount> {
    return this.windows.increment(key, windowMs);
  }

  get(key: string): Promise<WindowCount> {
    return this.windows.get(key);
  }

  async hold(key: string, value: string): Promise<boolean> {
    if (this.held.has(key)) return false;
    this.held.set(key, value);
    return true;
  }

  async drop(key: string): Promise<void> {
    this.held.delete(key);
  }

  async lookup(key: string): Promise<string | undefined> {
    return this.held.get(key);
  }

  /** Everything held now (the Redis coordinator puts it again on each heartbeat). */
  heldEntries(): IterableIterator<[string, string]> {
    return this.held.entries();
  }

  async setShare(key: string, value: number): Promise<void> {
    if (value === 0) this.shares.delete(key);
    else this.shares.set(key, value);
  }

  async total(key: string): Promise<number> {
    return this.shares.get(key) ?? 0;
  }

  shareEntries(): IterableIterator<[string, number]> {
    return this.shares.entries();
  }

  async setFlag(key: string, value: string, ttlMs: number): Promise<void> {
    this.flags.set(key, { value, expiresAt: Date.now() + ttlMs });
  }

  async getFlag(key: string): Promise<string | undefined> {
    const f = this.flags.get(key);
    if (f && f.expiresAt > Date.now()) return f.value;
    this.flags.delete(key);
    return undefined;
  }

  async clearFlag(key: string): Promise<void> {
    this.flags.delete(key);
  }

  async tryLock(name: string, leaseMs: number): Promise<HeldLock | undefined> {
    const now = Date.now();
    const current = this.locks.get(name);
    if (current && current.expiresAt > now) return undefined;
    // As in Redis: past every earlier token and past the clock in microseconds.
    const token = Math.max((this.fences.get(name) ?? 0) + 1, now * 1000);
    this.fences.set(name, token);
    this.locks.set(name, { token, expiresAt: now + leaseMs });
    const mine = () => {
      const l = this.locks.get(name);
      return l !== undefined && l.token === token && l.expiresAt > Date.now();
    };
    return {
      token,
      stillHeld: async () => mine(),
      release: async () => {
        if (this.locks.get(name)?.token === token) this.locks.delete(name);
      },
    };
  }

  async publish(channel: string, message: Message): Promise<void> {
    // Delivered on a later turn, as a message from Redis would be.
    setImmediate(() => this.bus.emit(channel, message));
  }

  subscribe(channel: string, handler: (message: Message) => void): void {
    this.bus.on(channel, handler);
  }

  onReconnect(): void {
    // Nothing is ever lost in process.
  }

  async close(): Promise<void> {
    this.bus.removeAllListeners();
  }
}
