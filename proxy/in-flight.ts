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

  track(handler: Promise<void>): void {
    this.count++;
    handler.then(this.settled, this.rejected);
  }

  /** Resolves once nothing is being served. */
  drained(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return (this.whenDrained ??= new Promise((resolve) => (this.drainedNow = resolve)));
  }

  private readonly settled = (): void => {
    if (--this.count > 0) return;
    this.drainedNow?.();
    this.drainedNow = this.whenDrained = undefined;
  };

  private readonly rejected = (err: unknown): void => {
    this.failed(err);
    this.settled();
  };
}
