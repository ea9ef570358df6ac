/**
 * Neon rate-limits its API per account. Every request of one region goes through one limiter:
 * at most `max` at once, fewer after Neon answered 429 (halved, then grown back by one per
 * success), and none at all until a Retry-After Neon sent has passed. Waiting requests are
 * served in arrival order.
 */
export class RequestLimiter {
  private active = 0;
  private limit: number;
  private pausedUntil = 0;
  private readonly waiting: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new Error('the request limit must be a whole number of at least 1');
    this.limit = max;
  }

  /** Requests running now, and the limit in force (below max after 429s). */
  get stats(): { active: number; queued: number; limit: number } {
    return { active: this.active, queued: this.waiting.length, limit: this.limit };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.active--;
      this.drain();
    }
  }

  /** Neon answered 429: fewer requests at once, and none before `retryAfterMs` has passed. */
  throttled(retryAfterMs: number | undefined): void {
    this.limit = Math.max(1, Math.floor(this.limit / 2));
    if (retryAfterMs !== undefined && retryAfterMs > 0) this.pausedUntil = Math.max(this.pausedUntil, Date.now() + retryAfterMs);
  }

  /** A request went through: one more may run at once, up to max. */
  succeeded(): void {
    if (this.limit < this.max) this.limit++;
    this.drain();
  }

  private acquire(): Promise<void> {
    if (this.waiting.length === 0 && this.free()) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.drain();
    });
  }

  private free(): boolean {
    return this.active < this.limit && Date.now() >= this.pausedUntil;
  }

  private drain(): void {
    while (this.waiting.length > 0 && this.free()) {
      this.active++;
      this.waiting.shift()!();
    }
    const wait = this.pausedUntil - Date.now();
    if (this.waiting.length > 0 && wait > 0 && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.drain();
      }, wait);
    }
  }
}
