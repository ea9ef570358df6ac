/**
 * Requests without a key pgfleet knows (none, malformed, unknown, revoked), counted per client
 * address: past the limit an address gets 429 before any key lookup, so guessing keys or
 * hammering the API without one costs neither the catalog nor other clients anything.
 */
import { RateLimitedError } from '../src/errors.ts';
import { addressKey } from '../src/limits/address-key.ts';
import { MemoryWindowCounters, type WindowCounters } from '../src/limits/window-counters.ts';

const WINDOW_MS = 60_000;

export class UnauthenticatedLimit {
  constructor(
    private readonly perMinute: number,
    private readonly counters: WindowCounters = new MemoryWindowCounters(),
  ) {}

  /** Throws 429 when this address has used up its unauthenticated requests. */
  async check(ip: string): Promise<void> {
    const w = await this.counters.get(`api:unauth:${addressKey(ip)}`);
    if (w.count >= this.perMinute) {
      const seconds = Math.max(1, Math.ceil(w.resetInMs / 1000));
      throw new RateLimitedError(`too many requests without a valid API key from this address; retry in ${seconds} s`, seconds);
    }
  }

  async count(ip: string): Promise<void> {
    await this.counters.increment(`api:unauth:${addressKey(ip)}`, WINDOW_MS);
  }
}
