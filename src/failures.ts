/**
 * Refused logins seen by this gateway, for the operator's console: counts by reason over the last
 * hour and the latest few lines. Kept in memory (a flood makes them by the thousand; the log keeps
 * its own sampled lines), so each gateway answers for itself.
 */
export interface RefusedLogin {
  at: Date;
  reason: string;
  why: string;
  endpoint?: string;
  role?: string;
  client?: string;
}

const WINDOW_MS = 3_600_000;
const MINUTE_MS = 60_000;
const KEPT = 50;

export class RecentFailures {
  private readonly recent: RefusedLogin[] = [];
  /** Minute → reason → count, for the last hour. */
  private readonly minutes = new Map<number, Map<string, number>>();

  loginRefused(login: Omit<RefusedLogin, 'at'>, now = Date.now()): void {
    this.recent.push({ ...login, at: new Date(now) });
    if (this.recent.length > KEPT) this.recent.shift();
    const minute = Math.floor(now / MINUTE_MS) * MINUTE_MS;
    let counts = this.minutes.get(minute);
    if (!counts) {
      this.minutes.set(minute, (counts = new Map()));
      for (const m of this.minutes.keys()) if (m <= now - WINDOW_MS) this.minutes.delete(m);
    }
    counts.set(login.reason, (counts.get(login.reason) ?? 0) + 1);
  }

  /** Counts by reason over the last hour, and the latest refusals, newest first. */
  refusedLogins(now = Date.now()): { byReason: Record<string, number>; recent: RefusedLogin[] } {
    const byReason: Record<string, number> = {};
    for (const [minute, counts] of this.minutes) {
      if (minute <= now - WINDOW_MS) continue;
      for (const [reason, n] of counts) byReason[reason] = (byReason[reason] ?? 0) + n;
    }
    return { byReason, recent: [...this.recent].reverse() };
  }
}
