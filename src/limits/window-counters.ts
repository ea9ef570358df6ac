/**
 * Fixed-window counters: the only thing pgfleet's limits need from a store. In-process here;
 * a store shared by several gateways (Redis) implements the same two calls.
 */
export interface WindowCount {
  count: number;
  /** Milliseconds until the window ends (0 when the key has no window). */
  resetInMs: number;
}

export interface WindowCounters {
  /** Adds one to key's count in its current window (started now when none) and returns the new count. */
  increment(key: string, windowMs: number): Promise<WindowCount>;
  /** key's count in its current window. */
  get(key: string): Promise<WindowCount>;
}

/** Windows kept at most; the least recently touched go first, so memory stays bounded under a flood of keys. */
const MAX_KEYS = 100_000;

export class MemoryWindowCounters implements WindowCounters {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(private readonly maxKeys = MAX_KEYS) {}

  private current(key: string, now: number) {
    const w = this.windows.get(key);
    if (w && w.resetAt > now) return w;
    if (w) this.windows.delete(key);
    return undefined;
  }

  async increment(key: string, windowMs: number): Promise<WindowCount> {
    const now = Date.now();
    const w = this.current(key, now) ?? { count: 0, resetAt: now + windowMs };
    w.count++;
    this.windows.delete(key);
    this.windows.set(key, w);
    while (this.windows.size > this.maxKeys) this.windows.delete(this.windows.keys().next().value!);
    return { count: w.count, resetInMs: w.resetAt - now };
  }

  async get(key: string): Promise<WindowCount> {
    const now = Date.now();
    const w = this.current(key, now);
    return w ? { count: w.count, resetInMs: w.resetAt - now } : { count: 0, resetInMs: 0 };
  }
}
