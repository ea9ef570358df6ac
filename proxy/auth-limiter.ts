/**
 * Failed-authentication policy. A client address that keeps failing is refused for a while;
 * a target (an endpoint, or a JWT issuer) that many addresses fail against is only slowed:
 * its failures are answered late, and a right password or token still gets in at once. An
 * endpoint name is public, so refusing by target would let anyone lock its owner out, while
 * generated passwords (24 random bytes) are far beyond what online guessing can reach.
 *
 * Failures are counted where every gateway (and worker) counts them. A refusal, once an address
 * reaches its limit, is told to all of them as a message, so that checking a connecting address
 * reads memory, not the shared counters: most connections never failed, and a read per
 * connection was a round trip to Redis or to the primary. A gateway that cannot hear messages
 * (its Redis subscription is down) reads the counters as before.
 */
import { type Coordinator, INVALIDATE } from '../src/coord/coordinator.ts';
import { addressKey } from '../src/limits/address-key.ts';
import { ExpiringMap } from '../src/limits/expiring-map.ts';
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

/** How refusals reach every gateway: the coordinator's messages. */
type RefusalChannel = Pick<Coordinator, 'listening' | 'publish' | 'subscribe'>;

/** The message (on the coordinator's `invalidate` channel) that an address reached its limit. */
const REFUSED = 'auth-refused';
/** Refused addresses remembered at most; the oldest go first, so a flood of addresses stays bounded. */
const MAX_REFUSED = 100_000;

export class AuthLimiter {
  /** Refused address keys, each until its window ends. */
  private readonly refused = new ExpiringMap<string, true>(MAX_REFUSED);

  constructor(
    private readonly limits: AuthLimits = DEFAULT_AUTH_LIMITS,
    private readonly counters: WindowCounters & Partial<RefusalChannel> = new MemoryWindowCounters(),
  ) {
    counters.subscribe?.(INVALIDATE, (m) => {
      if (m.type === REFUSED) this.refuse(String(m.key), Number(m.resetInMs));
    });
  }

  /** Throws 28000 when this client address has used up its failures. */
  async check(address: string): Promise<void> {
    const key = `auth:a:${addressKey(address)}`;
    let resetInMs = this.refused.msLeft(key);
    if (resetInMs === 0 && this.counters.listening === false) {
      const w = await this.counters.get(key);
      if (w.count >= this.limits.perAddress) resetInMs = w.resetInMs;
    }
    if (resetInMs > 0) {
      throw new ConnectionRefused(
        `too many failed authentication attempts from this address; try again in ${Math.ceil(resetInMs / 1000)} s`, '28000');
    }
  }

  /** Counts a failure of `address` against `target`; resolves late when the target is under attack. */
  async failed(target: string, address: string): Promise<void> {
    const key = `auth:a:${addressKey(address)}`;
    const [onAddress, onTarget] = await Promise.all([
      this.counters.increment(key, this.limits.windowMs),
      this.counters.increment(`auth:t:${target}`, this.limits.windowMs),
    ]);
    if (onAddress.count >= this.limits.perAddress) {
      this.refuse(key, onAddress.resetInMs);
      // Told at most as reliably as the store can: this limiter refuses the address either way.
      await this.counters.publish?.(INVALIDATE, { type: REFUSED, key, resetInMs: onAddress.resetInMs }).catch(() => {});
    }
    if (onTarget.count > this.limits.slowTargetAfter) await new Promise((r) => setTimeout(r, this.limits.slowFailureMs));
  }

  private refuse(key: string, resetInMs: number): void {
    if (resetInMs > 0) this.refused.set(key, true, resetInMs);
  }
}
