/**
 * A map whose entries end after their own time to live, and which holds at most `max`: past it,
 * the entry set longest ago goes first, so a flood of keys stays bounded.
 */
export class ExpiringMap<K, V> {
  private readonly entries = new Map<K, { value: V; until: number }>();

  constructor(private readonly max: number) {}

  /** The value of a live entry (an ended one is removed). */
  get(key: K): V | undefined {
    return this.msLeft(key) > 0 ? this.entries.get(key)!.value : undefined;
  }

  /** Milliseconds left of the key's entry (0: none, or ended). */
  msLeft(key: K): number {
    const entry = this.entries.get(key);
    if (!entry) return 0;
    const left = entry.until - Date.now();
    if (left <= 0) this.entries.delete(key);
    return Math.max(0, left);
  }

  set(key: K, value: V, ttlMs: number): void {
    this.entries.delete(key);
    this.entries.set(key, { value, until: Date.now() + ttlMs });
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
  }

  /** Removes the entries whose value matches (every entry without a test). */
  deleteWhere(matches?: (value: V) => boolean): void {
    for (const [key, { value }] of this.entries) if (!matches || matches(value)) this.entries.delete(key);
  }
}
