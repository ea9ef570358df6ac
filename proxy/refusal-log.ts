/**
 * Log lines of connections that never authenticated, which a flood can make by the million:
 * the first few of each interval in full, the rest counted, and one summary line per interval
 * with the counts by outcome and the busiest addresses. Authenticated sessions are logged
 * one line each, elsewhere.
 */
import type { Logger } from '../src/log.ts';

export interface RefusalLogOptions {
  intervalMs: number;
  /** Refused connections logged in full per interval before they are only counted. */
  fullLines: number;
}

const TOP_ADDRESSES = 5;
/** Distinct addresses counted per interval; beyond, refusals count under "other". */
const MAX_ADDRESSES = 10_000;

export class RefusalLog {
  private logged = 0;
  private suppressed = 0;
  private readonly outcomes = new Map<string, number>();
  private readonly addresses = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly log: () => Logger, private readonly opts: RefusalLogOptions = { intervalMs: 10_000, fullLines: 20 }) {
    this.timer = setInterval(() => this.flush(), opts.intervalMs);
    this.timer.unref();
  }

  /** One refused connection: its log line (client and outcome at least). */
  note(line: Record<string, unknown>): void {
    if (this.logged < this.opts.fullLines) {
      this.logged++;
      this.log().info(line, 'connection');
      return;
    }
    this.suppressed++;
    const outcome = String(line.outcome);
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    const client = String(line.client ?? 'unknown');
    const key = this.addresses.has(client) || this.addresses.size < MAX_ADDRESSES ? client : 'other';
    this.addresses.set(key, (this.addresses.get(key) ?? 0) + 1);
  }

  /** Writes the summary of the interval (when anything was left out) and starts a new one. */
  flush(): void {
    if (this.suppressed > 0) {
      const top = [...this.addresses].sort((a, b) => b[1] - a[1]).slice(0, TOP_ADDRESSES);
      this.log().warn({
        refused: this.suppressed,
        logged_in_full: this.logged,
        outcomes: Object.fromEntries(this.outcomes),
        top_clients: Object.fromEntries(top),
        interval_s: this.opts.intervalMs / 1000,
      }, 'connections refused (not logged one by one)');
    }
    this.logged = 0;
    this.suppressed = 0;
    this.outcomes.clear();
    this.addresses.clear();
  }

  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }
}
