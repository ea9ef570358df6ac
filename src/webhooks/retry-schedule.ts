/**
 * When a failed webhook delivery is tried again. The default waits (Standard Webhooks' usual
 * schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) make eight attempts over 27.6 hours, so an
 * endpoint down for a day still gets every event; PGFLEET_WEBHOOK_RETRY_SCHEDULE sets others.
 */
export const DEFAULT_RETRY_SCHEDULE_SECONDS: readonly number[] = [5, 300, 1800, 7200, 18000, 36000, 36000];

/** The wait before the next attempt after `failedAttempts` failures, or undefined when the schedule is spent. */
export function retryDelayMs(failedAttempts: number, scheduleMs: readonly number[]): number | undefined {
  if (!Number.isInteger(failedAttempts) || failedAttempts < 1) throw new RangeError('failedAttempts counts from 1');
  return scheduleMs[failedAttempts - 1];
}

