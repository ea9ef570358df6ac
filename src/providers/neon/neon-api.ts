import { type Api, createApiClient } from '@neondatabase/api-client';
import type { Logger } from 'pino';
import { ProviderError } from '../../errors.ts';

/**
 * Every Neon API call pgfleet makes, by the client's method name (= the operationId in Neon's
 * OpenAPI document). NeonApi.call accepts nothing else, and a test checks each against the document.
 */
export const NEON_OPERATIONS = [
  'createProject',
  'deleteProject',
  'getProjectEndpoint',
  'startProjectEndpoint',
  'suspendProjectEndpoint',
  'getProjectOperation',
  'createProjectBranchRole',
  'resetProjectBranchRolePassword',
  'getConsumptionHistoryPerProject',
] as const;
export type NeonOperation = (typeof NEON_OPERATIONS)[number];

type Client = Api<unknown>;
export type NeonResult<K extends NeonOperation> = Awaited<ReturnType<Client[K]>>['data'];

/** A Neon API call that failed for good; `status` is the HTTP status when Neon answered. */
export class NeonApiError extends ProviderError {
  constructor(
    message: string,
    readonly operation: NeonOperation,
    readonly status: number | undefined,
    readonly attempts: number,
  ) {
    super(message);
  }
}

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the call fails at once. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 250, maxDelayMs: 8_000, maxRetryAfterMs: 60_000 };

export interface NeonApiOptions {
  apiKey: string;
  /** Base URL, e.g. https://console.neon.tech/api/v2. */
  baseUrl: string;
  retry?: Partial<RetryPolicy>;
  /** One HTTP request's limit. */
  requestTimeoutMs?: number;
  log: Logger;
}

interface Failure {
  status: number | undefined;
  retryable: boolean;
  retryAfterMs: number | undefined;
  detail: string;
}

// 423: the project has another operation running (Neon's documented "locked" answer); try again later.
const RETRY_STATUSES = new Set([423, 429, 500, 502, 503, 504]);
// Failures where the request cannot have been processed, or the answer was lost on the way.
const RETRY_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ECONNABORTED', 'EAI_AGAIN', 'EPIPE']);

function retryAfterMs(value: unknown): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** What went wrong, from an axios error, without its request config (which holds the API key). */
function describe(err: unknown): Failure {
  const e = err as { code?: string; message?: string; response?: { status: number; headers?: Record<string, unknown>; data?: unknown } };
  if (e.response) {
    const { status, headers, data } = e.response;
    const body = (data ?? {}) as { message?: unknown; code?: unknown; request_id?: unknown };
    const message = typeof body.message === 'string' ? body.message : '';
    const request = typeof body.request_id === 'string' ? ` (request ${body.request_id})` : '';
    return {
      status,
      retryable: RETRY_STATUSES.has(status),
      retryAfterMs: retryAfterMs(headers?.['retry-after']),
      detail: `HTTP ${status}${message ? `: ${message}` : ''}${request}`,
    };
  }
  const code = e.code ?? 'unknown';
  return { status: undefined, retryable: RETRY_CODES.has(code), retryAfterMs: undefined, detail: `no answer (${code}${e.message ? `: ${e.message}` : ''})` };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Neon's API through @neondatabase/api-client, with bounded retries: 429, 423 and 5xx answers
 * and lost connections are tried again after exponential backoff with jitter, or after the
 * Retry-After Neon sends; then the call fails with a NeonApiError that says why.
 */
export class NeonApi {
  private readonly client: Client;
  private readonly retry: RetryPolicy;

  constructor(private readonly opts: NeonApiOptions) {
    this.client = createApiClient({ apiKey: opts.apiKey, baseURL: opts.baseUrl, timeout: opts.requestTimeoutMs ?? 30_000 });
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
  }

  /** Backoff before attempt n+1: exponential, "equal jitter" (half fixed, half random). */
  private backoffMs(attempt: number): number {
    const ceiling = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** Calls one operation; `deadline` (epoch ms) stops retrying once the next wait would pass it. */
  async call<K extends NeonOperation>(operation: K, args: Parameters<Client[K]>, deadline = Infinity): Promise<NeonResult<K>> {
    const method = this.client[operation] as (...a: unknown[]) => Promise<{ data: NeonResult<K> }>;
    for (let attempt = 1; ; attempt++) {
      let failure: Failure;
      try {
        return (await method(...args)).data;
      } catch (err) {
        failure = describe(err);
      }
      const fail = (why: string) =>
        new NeonApiError(`Neon API ${operation} failed${why}: ${failure.detail}`, operation, failure.status, attempt);
      if (!failure.retryable) throw fail('');
      if (attempt >= this.retry.attempts) throw fail(` after ${attempt} attempts`);
      if (failure.retryAfterMs !== undefined && failure.retryAfterMs > this.retry.maxRetryAfterMs) {
        throw fail(`; Neon asks to wait ${Math.ceil(failure.retryAfterMs / 1000)} s before trying again`);
      }
      const wait = failure.retryAfterMs ?? this.backoffMs(attempt);
      if (Date.now() + wait > deadline) throw fail(` (gave up after ${attempt} attempts: out of time)`);
      this.opts.log.warn({ neon_operation: operation, status: failure.status, attempt, wait_ms: Math.round(wait) }, 'Neon API call failed; retrying');
      await sleep(wait);
    }
  }
}
