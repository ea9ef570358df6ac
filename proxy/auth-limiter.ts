import type { WindowCounters } from '../src/coord/coordinator.ts';
import { ConnectionRefused } from './errors.ts';

export interface AuthLimits {
  /** Failed attempts allowed from one client address per window. */
  perAddress: number;
  /** Failed attempts allowed against one endpoint per window. */
  perEndpoint: number;
  windowMs: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = { perAddress: 20, perEndpoint: 100, windowMs: 60_000 };

/**
 * Counts failed authentications per endpoint and per source address in fixed windows. The
 * counters live in the fleet's coordinator, so failures spread over several gateways count as one.
 */
export class AuthLimiter {
  constructor(
    private readonly limits: AuthLimits,
    private readonly counters: WindowCounters,
  ) {}

  /** Throws when either the address or the endpoint has used up its failures. */
  async check(endpoint: string, address: string): Promise<void> {
    const checks = [[`auth:a:${address}`, this.limits.perAddress, 'this address'], [`auth:e:${endpoint}`, this.limits.perEndpoint, 'this endpoint']] as const;
    const windows = await Promise.all(checks.map(([key]) => this.counters.get(key)));
    for (const [i, [, limit, who]] of checks.entries()) {
      const w = windows[i]!;
      if (w.count >= limit) {
        throw new ConnectionRefused(`too many failed authentication attempts for ${who}; try again in ${Math.ceil(w.resetInMs / 1000)} s`, '28000');
      }
    }
  }

  async failed(endpoint: string, address: string): Promise<void> {
    await Promise.all([`auth:a:${address}`, `auth:e:${endpoint}`].map((key) => this.counters.increment(key, this.limits.windowMs)));
  }
}
