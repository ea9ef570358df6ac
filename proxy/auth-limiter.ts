import { ConnectionRefused } from './errors.ts';

export interface AuthLimits {
  /** Failed attempts allowed from one client address per window. */
  perAddress: number;
  /** Failed attempts allowed against one endpoint per window. */
  perEndpoint: number;
  windowMs: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = { perAddress: 20, perEndpoint: 100, windowMs: 60_000 };
/** Counters kept at most; the oldest windows are dropped first, so memory stays bounded. */
const MAX_KEYS = 100_000;

/** Counts failed authentications per endpoint and per source address in fixed windows. */
export class AuthLimiter {
  private readonly windows = new Map<string, { failures: number; resetAt: number }>();

  constructor(private readonly limits: AuthLimits = DEFAULT_AUTH_LIMITS) {}

  private current(key: string, now: number) {
    const w = this.windows.get(key);
    if (w && w.resetAt > now) return w;
    if (w) this.windows.delete(key);
    return undefined;
  }

  /** Throws when either the address or the endpoint has used up its failures. */
  check(endpoint: string, address: string): void {
    const now = Date.now();
    for (const [key, limit, who] of [[`a:${address}`, this.limits.perAddress, 'this address'], [`e:${endpoint}`, this.limits.perEndpoint, 'this endpoint']] as const) {
      const w = this.current(key, now);
      if (w && w.failures >= limit) {
        throw new ConnectionRefused(
          `too many failed authentication attempts for ${who}; try again in ${Math.ceil((w.resetAt - now) / 1000)} s`, '28000');
      }
    }
  }

  failed(endpoint: string, address: string): void {
    const now = Date.now();
    for (const key of [`a:${address}`, `e:${endpoint}`]) {
      const w = this.current(key, now) ?? { failures: 0, resetAt: now + this.limits.windowMs };
      w.failures++;
      this.windows.delete(key);
      this.windows.set(key, w);
    }
    while (this.windows.size > MAX_KEYS) this.windows.delete(this.windows.keys().next().value!);
  }
}
