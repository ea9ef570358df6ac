import http from 'node:http';
import https from 'node:https';
import { InternalAddressError, outboundRequest } from '../outbound-address.ts';
import { signedHeaders } from './signing.ts';

/** What one delivery attempt sends: the event as Standard Webhooks' payload. */
export interface Outgoing {
  url: string;
  secret: string;
  eventId: string;
  type: string;
  createdAt: Date;
  data: unknown;
}

export interface AttemptOutcome {
  ok: boolean;
  /** The HTTP status of the answer; undefined when none came. */
  status?: number;
  /** Why it failed, for the delivery's record (no secret, at most 500 characters). */
  error?: string;
  startedAt: Date;
  durationMs: number;
}

const ANSWER_BYTES = 64 * 1024;

// Kept-alive connections to partners' endpoints (the address is checked when each one opens).
const agents = { http: new http.Agent({ keepAlive: true, maxSockets: 64 }), https: new https.Agent({ keepAlive: true, maxSockets: 64 }) };

/** The body of a delivery: `{id, type, timestamp, data}` (the id is also webhook-id: receivers dedupe on it). */
const payloadOf = (o: Outgoing): string => JSON.stringify({ id: o.eventId, type: o.type, timestamp: o.createdAt.toISOString(), data: o.data });

/** One signed POST; a 2xx answer is a success, anything else (no answer in time included) a failure to retry. */
export async function attemptDelivery(o: Outgoing, opts: { timeoutMs: number; allowInternal: boolean; signal: AbortSignal; userAgent: string }): Promise<AttemptOutcome> {
  const startedAt = new Date();
  const body = payloadOf(o);
  const url = new URL(o.url);
  const done = (rest: Omit<AttemptOutcome, 'startedAt' | 'durationMs'>): AttemptOutcome => ({ ...rest, startedAt, durationMs: Date.now() - startedAt.getTime() });
  try {
    const answer = await outboundRequest({
      url, method: 'POST', body, allowInternal: opts.allowInternal, maxBytes: ANSWER_BYTES, timeoutMs: opts.timeoutMs, signal: opts.signal,
      agent: url.protocol === 'https:' ? agents.https : agents.http,
      headers: { 'content-type': 'application/json', 'user-agent': opts.userAgent, ...signedHeaders(o.secret, o.eventId, startedAt, body) },
    });
    if (answer.status >= 200 && answer.status < 300) return done({ ok: true, status: answer.status });
    const text = answer.body.toString('utf8', 0, 200).replace(/\s+/g, ' ').trim();
    return done({ ok: false, status: answer.status, error: `HTTP ${answer.status}${text ? `: ${text}` : ''}` });
  } catch (err) {
    const reason = err instanceof InternalAddressError
      ? `${err.message}: refused (set PGFLEET_WEBHOOK_ALLOW_INTERNAL to allow internal addresses)`
      : (err as Error).message;
    return done({ ok: false, error: reason.slice(0, 500) });
  }
}
