import { ConfigError } from '../errors.ts';

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


/** The schedule in milliseconds from its setting: waits in seconds, comma-separated (the default when unset). */
export function parseRetrySchedule(variable: string, raw: string | undefined): number[] {
  if (raw === undefined) return DEFAULT_RETRY_SCHEDULE_SECONDS.map((s) => s * 1000);
  const parts = raw.split(',').map((p) => p.trim());
  if (parts.length > 50 || parts.some((p) => !/^\d+(\.\d+)?$/.test(p) || Number(p) > 7 * 86400)) {
    throw new ConfigError(variable, `must be up to 50 waits in seconds (0 to 604800) separated by commas, got "${raw}"`);
  }
  return parts.map((p) => Math.round(Number(p) * 1000));
}
