import { addressKey } from './address-key.ts';

/**
 * Open connections per client address (an IPv6 /64, see addressKey), for caps that keep one
 * address from holding what every other client needs.
 */
export class AddressCounts {
  private readonly open = new Map<string, number>();

  /**
   * Counts one more connection from `address` unless `max` are open from it already. Returns
   * what gives it back (once, however often it is called), or undefined at the cap.
   */
  take(address: string | undefined, max: number): (() => void) | undefined {
    const key = addressKey(address);
    const n = this.open.get(key) ?? 0;
    if (n >= max) return undefined;
    this.open.set(key, n + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left > 0) this.open.set(key, left);
      else this.open.delete(key);
    };
  }
}
