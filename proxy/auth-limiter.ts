/**
 * Failed-authentication policy. A client address that keeps failing is refused for a while;
 * a target (an endpoint, or a JWT issuer) that many addresses fail against is only slowed:
 * its failures are answered late, and a right password or token still gets in at once. An
 * endpoint name is public, so refusing by target would let anyone lock its owner out, while
 * generated passwords (24 random bytes) are far beyond what online guessing can reach.
 */
import { addressKey } from '../src/limits/address-key.ts';
import { MemoryWindowCounters, type WindowCounters } from '../src/limits/window-counters.ts';
import { ConnectionRefused } from './errors.ts';

export interface AuthLimits {
  /** Failed attempts one client address may make per window (over all targets) before it is refused. */
  perAddress: number;
  /** Failed attempts against one target per window past which its failures are answered late. */
  slowTargetAfter: number;
  /** How late a failure is answered while its target is over slowTargetAfter. */
  slowFailureMs: number;
  windowMs: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = { perAddress: 20, slowTargetAfter: 100, slowFailureMs: 2000, windowMs: 60_000 };

export class AuthLimiter {
  constructor(
    private readonly limits: AuthLimits = DEFAULT_AUTH_LIMITS,
    private readonly counters: WindowCounters = new MemoryWindowCounters(),
  ) {}

  /** Throws 28000 when this client address has used up its failures. */
  async check(address: string): Promise<void> {
    const w = await this.counters.get(`auth:a:${addressKey(address)}`);
    if (w.count >= this.limits.perAddress) {
      throw new ConnectionRefused(
        `too many failed authentication attempts from this address; try again in ${Math.ceil(w.resetInMs / 1000)} s`, '28000');
    }
  }

  /** Counts a failure of `address` against `target`; resolves late when the target is under attack. */
  async failed(target: string, address: string): Promise<void> {
    const [, onTarget] = await Promise.all([
      this.counters.increment(`auth:a:${addressKey(address)}`, this.limits.windowMs),
      this.counters.increment(`auth:t:${target}`, this.limits.windowMs),
    ]);
    if (onTarget.count > this.limits.slowTargetAfter) await new Promise((r) => setTimeout(r, this.limits.slowFailureMs));
  }
}
