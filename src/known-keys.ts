import { type Coordinator, INVALIDATE } from './coord/coordinator.ts';

/** Who a partner key speaks for (src/partners.ts's Principal of kind 'partner'). */
export interface PartnerKey {
  kind: 'partner';
  partnerId: string;
  keyId: string;
}

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
export class KnownKeys {
  private readonly entries = new Map<string, { key: PartnerKey; expiresAt: number }>();
  /** Grows with every revocation heard of: a lookup that began in an earlier epoch may be stale. */
  private epoch = 0;

  constructor(private readonly coord: Pick<Coordinator, 'listening' | 'publish' | 'subscribe' | 'onReconnect'>) {
    coord.subscribe(INVALIDATE, (m) => {
      if (m.type === KEYS_REVOKED) this.drop(String(m.partnerId));
    });
    coord.onReconnect(() => this.drop(undefined));
  }

  /** The key of this hash: kept, or as `load` reads it from the catalog. */
  async lookup(hash: string, load: () => Promise<PartnerKey | undefined>): Promise<PartnerKey | undefined> {
    const kept = this.entries.get(hash);
    if (kept && kept.expiresAt > Date.now() && this.coord.listening) return kept.key;
    const epoch = this.epoch;
    const key = await load();
    if (key && epoch === this.epoch && this.coord.listening) {
      this.entries.delete(hash);
      this.entries.set(hash, { key, expiresAt: Date.now() + KEEP_MS });
      if (this.entries.size > MAX_KEYS) this.entries.delete(this.entries.keys().next().value!);
    }
    return key;
  }

  /** The partner's keys were revoked (committed): here at once, on every gateway once the message is out. */
  async revoked(partnerId: string): Promise<void> {
    this.drop(partnerId);
    await this.coord.publish(INVALIDATE, { type: KEYS_REVOKED, partnerId }).catch(() => {});
  }

  private drop(partnerId: string | undefined): void {
    this.epoch++;
    for (const [hash, { key }] of this.entries) {
      if (partnerId === undefined || key.partnerId === partnerId) this.entries.delete(hash);
    }
  }
}
