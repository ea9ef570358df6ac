/**
 * One copy of each value lately seen, by key: sessions that hold equal values hold the same one
 * (idle sessions are many). Past `cap` keys a new generation begins; holders of older copies keep them.
 */
export class Interner<V> {
  private readonly known = new Map<string, V>();

  constructor(private readonly cap: number) {}

  /** The copy kept for `key`; `value` becomes it when none is. */
  intern(key: string, value: V): V {
    const kept = this.known.get(key);
    if (kept !== undefined) return kept;
    if (this.known.size >= this.cap) this.known.clear();
    this.known.set(key, value);
    return value;
  }
}
