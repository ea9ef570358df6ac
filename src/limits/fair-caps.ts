import { addressKey } from './address-key.ts';

/**
 * A total cap shared fairly between client addresses (an IPv6 /64 counts as one, see
 * addressKey): no address holds more than `perAddress`, and the last tenth of the total is kept
 * for addresses that hold little (fewer than `smallShare`), so that however few addresses fill
 * the rest, a new one that behaves still gets in. Exempt holders (trusted proxies, fleet peers)
 * skip the per-address rules; the total holds for them too.
 */
export interface FairCapLimits {
  total: number;
  perAddress: number;
}

export type Taken = { ok: true; release: () => void } | { ok: false; reason: string };

/** Share of the total kept for addresses that hold little. */
const RESERVE_FRACTION = 0.1;
/** Addresses it takes to fill the reserve at their small share each. */
const RESERVE_ADDRESSES = 32;

export class FairCaps {
  private readonly open = new Map<string, number>();
  private held = 0;
  /** Above this total, only addresses holding fewer than smallShare get in. */
  readonly sharedRoom: number;
  readonly smallShare: number;

  constructor(readonly limits: FairCapLimits, private readonly what: string) {
    const reserve = Math.min(limits.total - 1, Math.ceil(limits.total * RESERVE_FRACTION));
    this.sharedRoom = limits.total - reserve;
    this.smallShare = Math.max(1, Math.min(limits.perAddress, Math.floor(reserve / RESERVE_ADDRESSES)));
  }

  /** One more holder from `address` (undefined: counted under 'unknown'), or why not. */
  take(address: string | undefined, exempt = false): Taken {
    const key = addressKey(address);
    const n = this.open.get(key) ?? 0;
    if (this.held >= this.limits.total) return { ok: false, reason: `too many ${this.what}` };
    if (!exempt) {
      if (n >= this.limits.perAddress) return { ok: false, reason: `too many ${this.what} from this address` };
      if (this.held >= this.sharedRoom && n >= this.smallShare) {
        return { ok: false, reason: `too many ${this.what}; the room left is kept for other addresses` };
      }
    }
    this.held++;
    this.open.set(key, n + 1);
    let held = true;
    return {
      ok: true,
      release: () => {
        if (!held) return;
        held = false;
        this.held--;
        const left = (this.open.get(key) ?? 1) - 1;
        if (left > 0) this.open.set(key, left);
        else this.open.delete(key);
      },
    };
  }

  /** Holders now, in all. */
  get count(): number {
    return this.held;
  }
}
