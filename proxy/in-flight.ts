/**
 * A listener's connections (or requests) still being served, counted rather than kept: a
 * gateway with many thousands of idle sessions holds no promise chain per session for them.
 * Closing the listener waits until the count is back to zero.
 */
export class InFlight {
  private count = 0;
  private drainedNow: (() => void) | undefined;
  private whenDrained: Promise<void> | undefined;

  constructor(private readonly failed: (err: unknown) => void) {}

  /** Counts one in; settled() counts it out. */
  opened(): void {
    this.count++;
  }

  /** Counts one out, with what failed (logged) if anything did. */
  settled(err?: unknown): void {
    if (err !== undefined) this.failed(err);
    if (--this.count > 0) return;
    this.drainedNow?.();
    this.drainedNow = this.whenDrained = undefined;
  }

  /** A handler's promise: counted in now, out once it settles. */
  track(handler: Promise<void>): void {
    this.opened();
    handler.then(this.resolved, this.rejected);
  }

  /** Resolves once nothing is being served. */
  drained(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return (this.whenDrained ??= new Promise((resolve) => (this.drainedNow = resolve)));
  }

  private readonly resolved = (): void => this.settled();

  private readonly rejected = (err: unknown): void => this.settled(err ?? new Error('a handler failed without a reason'));
}
