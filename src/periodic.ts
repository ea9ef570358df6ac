/**
 * A background task run every so often, never twice at once: a tick that finds the previous run
 * still going is skipped. Failures go to onError; stop() waits for the run in progress.
 */
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly task: () => Promise<unknown>, private readonly onError: (err: Error) => void) {}

  /** A run now, unless one is going. */
  runNow(): void {
    if (this.running) return;
    this.running = this.task()
      .then(() => undefined, (err: Error) => this.onError(err))
      .finally(() => { this.running = undefined; });
  }

  /** A run every intervalMs until stop(); the timer keeps no process alive. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.runNow(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
