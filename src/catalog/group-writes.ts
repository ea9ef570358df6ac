/** Most items one statement writes: a burst of them (a fleet's suspends) goes in several. */
const MAX_BATCH = 500;

/**
 * Rows written right after the change they tell of, many in one statement: what is added while a
 * write is under way waits and goes with the next one, so a burst costs a few catalog round trips,
 * not one each (a group commit). A lone item is written at once.
 */
export class GroupWrites<T> {
  private waiting: { items: T[]; written: () => void; failed: (err: unknown) => void }[] = [];
  private writing: Promise<void> | undefined;

  constructor(private readonly write: (items: T[]) => Promise<unknown>) {}

  /** Settles once the statement that took these items has committed, or failed with its error. */
  add(items: T[]): Promise<void> {
    return new Promise((written, failed) => {
      this.waiting.push({ items, written, failed });
      this.writing ??= this.writeWaiting();
    });
  }

  /** Waits for everything added so far to be written (a stop does, before the catalog closes). */
  async settle(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async writeWaiting(): Promise<void> {
    while (this.waiting.length) {
      let count = 0;
      let taken = 0;
      while (taken < this.waiting.length && (taken === 0 || count + this.waiting[taken]!.items.length <= MAX_BATCH)) count += this.waiting[taken++]!.items.length;
      const batch = this.waiting.splice(0, taken);
      try {
        await this.write(batch.flatMap((b) => b.items));
        for (const b of batch) b.written();
      } catch (err) {
        // One caller's bad row must not cost the others theirs: a shared statement that failed is tried again a caller at a time.
        if (batch.length === 1) batch[0]!.failed(err);
        else for (const b of batch) await this.write(b.items).then(b.written, b.failed);
      }
    }
    this.writing = undefined;
  }
}
