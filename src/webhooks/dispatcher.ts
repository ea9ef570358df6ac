import { setMaxListeners } from 'node:events';
import type { Catalog } from '../catalog/catalog.ts';
import { SETTLED } from '../events/events.ts';
import type { Logger } from '../log.ts';
import type { OperatorMetrics } from '../metrics.ts';
import type { SecretBox } from '../secret-box.ts';
import { type AttemptOutcome, attemptDelivery } from './deliver.ts';
import { OutboxListener } from './outbox-listener.ts';
import { retryDelayMs } from './retry-schedule.ts';
import { secretContext } from './webhooks.ts';

export interface DispatcherOptions {
  catalog: Catalog;
  box: SecretBox;
  /** Leases carry it: a node that restarts takes back what it was sending when it stopped. */
  nodeId: string;
  retryScheduleMs: readonly number[];
  timeoutMs: number;
  allowInternal: boolean;
  metrics: OperatorMetrics;
  userAgent: string;
  log: Logger;
  /** Deliveries in flight at once on this gateway. */
  concurrency?: number;
}

interface Claimed {
  id: number;
  attempt: number;
  url: string;
  secret: string;
  eventId: string;
  type: string;
  data: unknown;
  createdAt: Date;
}

interface Result extends AttemptOutcome {
  id: number;
  attempt: number;
  /** The gateway stopped during the attempt: try again at once. */
  interrupted: boolean;
}

// The dispatcher's own bookkeeping commits without waiting for the disk (set_config in the
// statement's own transaction): a claim or a result lost to a crash only means the delivery is sent
// again, which at least once allows; events and deliveries themselves are written durably.
const NO_FLUSH = `nf AS (SELECT set_config('synchronous_commit', 'off', true))`;

// Each webhook's line (its deliveries of one database) goes out in order: a delivery is claimed
// only when no older one of its line is still pending, and only once every transaction that could
// still add an older one has ended (SETTLED).
const CLAIM = `
  WITH ${NO_FLUSH}, due AS (
    SELECT d.id FROM webhook_deliveries d
     WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND (d.lease_until IS NULL OR d.lease_until < now()) AND d.${SETTLED}
       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.webhook_id = d.webhook_id AND p.ordering_key = d.ordering_key
                        AND p.state = 'pending' AND (p.txid, p.event_seq) < (d.txid, d.event_seq))
     ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE OF d SKIP LOCKED)
  UPDATE webhook_deliveries d SET lease_until = now() + make_interval(secs => $2), claimed_by = $3, attempts = d.attempts + 1
    FROM due, events e, webhooks w, nf WHERE d.id = due.id AND e.seq = d.event_seq AND w.id = d.webhook_id
  RETURNING d.id, d.attempts, w.id AS webhook_id, w.url, w.secret_sealed, e.id AS event_id, e.type, e.data, e.created_at`;

// What each attempt came to, in one statement; a lease that ran out and was taken over by another
// gateway (attempts moved on) keeps the other gateway's state.
const RECORD = `
  WITH ${NO_FLUSH}, r AS (
    SELECT r.* FROM unnest($1::int8[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::text[], $7::text[], $8::float8[])
      AS r(id, attempt, started_at, duration_ms, status, error, state, delay_s)
      JOIN webhook_deliveries d ON d.id = r.id FOR KEY SHARE OF d),
  a AS (INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status, error, node_id)
        SELECT id, attempt, started_at, duration_ms, status, error, $9 FROM r ON CONFLICT DO NOTHING)
  UPDATE webhook_deliveries d SET state = r.state, lease_until = NULL, last_status = r.status, last_error = r.error,
         next_attempt_at = clock_timestamp() + make_interval(secs => COALESCE(r.delay_s, 0)),
         finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE clock_timestamp() END
    FROM r, nf WHERE d.id = r.id AND d.claimed_by = $9 AND d.attempts = r.attempt`;

// When the next delivery that could be claimed is due (head of its line, lease over).
const NEXT_DUE = `
  SELECT extract(epoch FROM min(GREATEST(d.next_attempt_at, COALESCE(d.lease_until, d.next_attempt_at))) - now())::float8 * 1000 AS ms
    FROM webhook_deliveries d WHERE d.state = 'pending'
     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.webhook_id = d.webhook_id AND p.ordering_key = d.ordering_key
                      AND p.state = 'pending' AND (p.txid, p.event_seq) < (d.txid, d.event_seq))`;

const IDLE_POLL_MS = 2000;
const RESULT_BATCH = 128;
const RESULT_WAIT_MS = 5;

/**
 * Sends the outbox's deliveries: claims due ones with a lease (FOR UPDATE SKIP LOCKED, so several
 * gateways send each once), posts them signed, records each attempt, and schedules the next one
 * per the retry schedule. Woken by the catalog's notification when an event is recorded, and
 * by a timer for retries and leases that run out.
 */
export class Dispatcher {
  private inFlight = 0;
  private claiming = false;
  private again = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private blockedWaitMs = 20;
  private results: Result[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly aborts = new AbortController();
  private readonly secrets = new Map<string, string>();
  private readonly listener: OutboxListener;
  private readonly concurrency: number;

  constructor(private readonly o: DispatcherOptions) {
    this.concurrency = o.concurrency ?? 64;
    setMaxListeners(0, this.aborts.signal); // one listener per delivery in flight
    this.listener = new OutboxListener(o.catalog, () => this.wake(), o.log);
  }

  async start(): Promise<void> {
    // What this node was sending when it last stopped (a kill -9): those attempts ended with it.
    await this.o.catalog.query(
      `WITH lost AS (
         UPDATE webhook_deliveries SET lease_until = NULL, next_attempt_at = now() WHERE state = 'pending' AND claimed_by = $1 AND lease_until > now()
         RETURNING id, attempts)
       INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status, error, node_id)
       SELECT id, attempts, now(), 0, NULL, 'the gateway stopped during this attempt', $1 FROM lost ON CONFLICT DO NOTHING`,
      [this.o.nodeId]);
    await this.listener.start();
    this.wake();
  }

  /** A pass now (or right after the one under way). */
  wake(): void {
    this.blockedWaitMs = 20;
    void this.pass();
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.pass(), Math.max(0, Math.min(ms, IDLE_POLL_MS)));
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    if (this.stopped) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    this.claiming = true;
    try {
      const room = this.concurrency - this.inFlight;
      if (room <= 0) return; // a finishing delivery calls again
      const { rows } = await this.o.catalog.query(CLAIM, [room, (this.o.timeoutMs + 15_000) / 1000, this.o.nodeId]);
      for (const r of rows) this.send(this.claimedOf(r));
      if (rows.length > 0) {
        this.blockedWaitMs = 20;
        if (rows.length === room) this.again = true;
        return;
      }
      const { rows: [next] } = await this.o.catalog.query(NEXT_DUE);
      if (next.ms === null) return this.schedule(IDLE_POLL_MS);
      if (next.ms > 0) return this.schedule(next.ms);
      // Due but not claimable: another gateway holds it, or a transaction that may add an older one is still open.
      this.schedule(this.blockedWaitMs);
      this.blockedWaitMs = Math.min(this.blockedWaitMs * 2, 1000);
    } catch (err) {
      this.o.log.warn({ err: String(err) }, 'webhook dispatch pass failed; will retry');
      this.schedule(IDLE_POLL_MS);
    } finally {
      this.claiming = false;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.pass();
      }
    }
  }

  private claimedOf(r: any): Claimed {
    let secret = this.secrets.get(r.secret_sealed);
    if (secret === undefined) {
      secret = this.o.box.open(r.secret_sealed, secretContext(r.webhook_id));
      if (this.secrets.size > 1000) this.secrets.clear();
      this.secrets.set(r.secret_sealed, secret);
    }
    return { id: Number(r.id), attempt: r.attempts, url: r.url, secret, eventId: r.event_id, type: r.type, data: r.data, createdAt: r.created_at };
  }

  private send(c: Claimed): void {
    this.inFlight++;
    void attemptDelivery({ url: c.url, secret: c.secret, eventId: c.eventId, type: c.type, createdAt: c.createdAt, data: c.data }, {
      timeoutMs: this.o.timeoutMs, allowInternal: this.o.allowInternal, signal: this.aborts.signal, userAgent: this.o.userAgent,
    }).then((outcome) => {
      this.o.metrics.webhookAttempts.inc({ outcome: outcome.ok ? 'ok' : 'failed' });
      this.results.push({ ...outcome, id: c.id, attempt: c.attempt, interrupted: this.stopped });
      if (this.results.length >= RESULT_BATCH) void this.flush();
      else this.flushTimer ??= setTimeout(() => void this.flush(), RESULT_WAIT_MS);
    });
  }

  /** Records the finished attempts in one statement, then claims more. */
  private flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = this.results;
    this.results = [];
    if (batch.length === 0) return this.flushing;
    this.flushing = this.flushing.then(async () => {
      const state = (r: Result) => (r.ok ? 'delivered' : r.interrupted ? 'pending' : retryDelayMs(r.attempt, this.o.retryScheduleMs) === undefined ? 'failed' : 'pending');
      const delay = (r: Result) => (r.ok || r.interrupted ? 0 : (retryDelayMs(r.attempt, this.o.retryScheduleMs) ?? 0) / 1000);
      try {
        await this.o.catalog.query(RECORD, [
          batch.map((r) => r.id), batch.map((r) => r.attempt), batch.map((r) => r.startedAt), batch.map((r) => r.durationMs),
          batch.map((r) => r.status ?? null), batch.map((r) => r.error ?? null), batch.map(state), batch.map(delay), this.o.nodeId,
        ]);
      } catch (err) {
        // The leases run out and another pass sends these again: at least once.
        this.o.log.warn({ err: String(err), deliveries: batch.length }, 'could not record webhook attempts');
      }
      for (const r of batch.filter((x) => !x.ok)) {
        this.o.log.info({ delivery: r.id, attempt: r.attempt, status: r.status, err: r.error, next: state(r) === 'failed' ? 'none: the delivery failed' : `in ${delay(r)} s` },
          'webhook delivery attempt failed');
      }
      this.inFlight -= batch.length;
      this.wake();
    });
    return this.flushing;
  }

  /** Stops claiming; attempts under way are cut short and recorded, to be tried again at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.listener.stop();
    this.aborts.abort(new Error('the gateway is stopping'));
    while (this.inFlight > 0) {
      await new Promise((r) => setTimeout(r, 10));
      await this.flush();
    }
  }
}
