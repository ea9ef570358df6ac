import { type Coordinator, INVALIDATE } from './coord/coordinator.ts';
import { ExpiringMap } from './limits/expiring-map.ts';

const KEYS_REVOKED = 'api-keys-revoked';
/** How long a key that authenticated is trusted without a catalog read (a revocation ends it sooner). */
const KEEP_MS = 60_000;
/** Keys kept at most; the least recently kept go first. */
const MAX_KEYS = 10_000;

/**
 * Partner keys that authenticated lately, by hash, so that an API request costs no catalog read for
 * its key. A revocation drops the partner's keys here at once and on every other gateway when its
 * message arrives. While this gateway may miss messages (its Redis subscription is down) nothing
 * kept is trusted, and a lookup begun before a revocation was heard is not kept.
 */
export class KnownKeys<Key extends { partnerId: string }> {
  private readonly entries = new ExpiringMap<string, Key>(MAX_KEYS);
  /** Grows with every revocation heard of: a lookup that began in an earlier epoch may be stale. */
  private epoch = 0;

  constructor(private readonly coord: Pick<Coordinator, 'listening' | 'publish' | 'subscribe' | 'onReconnect'>) {
    coord.subscribe(INVALIDATE, (m) => {
      if (m.type === KEYS_REVOKED) this.drop(String(m.partnerId));
    });
    coord.onReconnect(() => this.drop(undefined));
  }

  /** The key of this hash: kept, or as `load` reads it from the catalog. */
  async lookup(hash: string, load: () => Promise<Key | undefined>): Promise<Key | undefined> {
    const kept = this.coord.listening ? this.entries.get(hash) : undefined;
    if (kept) return kept;
    const epoch = this.epoch;
    const key = await load();
    if (key && epoch === this.epoch && this.coord.listening) this.entries.set(hash, key, KEEP_MS);
    return key;
  }

  /** The partner's keys were revoked (committed): here at once, on every gateway once the message is out. */
  async revoked(partnerId: string): Promise<void> {
    this.drop(partnerId);
    await this.coord.publish(INVALIDATE, { type: KEYS_REVOKED, partnerId }).catch(() => {});
  }

  private drop(partnerId: string | undefined): void {
    this.epoch++;
    this.entries.deleteWhere(partnerId === undefined ? undefined : (key) => key.partnerId === partnerId);
  }
}
