import { type Api, createApiClient } from '@neondatabase/api-client';
import type { Logger } from 'pino';
import { ProviderError } from '../../errors.ts';
import { RequestLimiter } from './request-limiter.ts';

/**
 * Every Neon API call pgfleet makes, by the client's method name (= the operationId in Neon's
 * OpenAPI document). NeonApi.call accepts nothing else, and a test checks each against the document.
 */
export const NEON_OPERATIONS = [
  'createProject',
  'listProjects',
  'getProject',
  'updateProject',
  'listProjectEndpoints',
  'updateProjectEndpoint',
  'getProjectBranchRolePassword',
  'deleteProject',
  'getProjectEndpoint',
  'startProjectEndpoint',
  'suspendProjectEndpoint',
  'getProjectOperation',
  'createProjectBranch',
  'listProjectBranches',
  'deleteProjectBranch',
  'restoreProjectBranch',
  'createProjectEndpoint',
  'createProjectBranchRole',
  'resetProjectBranchRolePassword',
  'getConsumptionHistoryPerProject',
] as const;
export type NeonOperation = (typeof NEON_OPERATIONS)[number];

type Client = Api<unknown>;
export type NeonResult<K extends NeonOperation> = Awaited<ReturnType<Client[K]>>['data'];

// Neon answered that the request itself is unacceptable (a bad value, a conflict): the caller's to fix.
const REFUSALS = new Set([400, 409, 412, 422]);

/**
 * A Neon API call that failed for good; `status` is the HTTP status when Neon answered. A refusal
 * (400, 409, 412, 422) is a 422 at pgfleet's API, anything else a 502. `ambiguous`: Neon may have
 * done what was asked (no answer, or a 5xx), so a create must look before it tries again.
 */
export class NeonApiError extends ProviderError {
  constructor(
    message: string,
    readonly operation: NeonOperation,
    readonly status: number | undefined,
    readonly attempts: number,
    readonly ambiguous = false,
  ) {
    super(message, status !== undefined && REFUSALS.has(status) ? 422 : 502, status !== undefined && REFUSALS.has(status) ? 'neon_refused' : 'provider_error');
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

/** Attempts count 5xx answers and lost connections; 429s are waited out until the call's deadline. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 250, maxDelayMs: 8_000, maxRetryAfterMs: 60_000 };
/** Requests to Neon's API at once, per region, unless PGFLEET_NEON_MAX_CONCURRENCY says otherwise. */
export const DEFAULT_NEON_CONCURRENCY = 8;

export interface CallOptions {
  /** Epoch ms: no retry wait may pass it. */
  deadline?: number;
  /**
   * Retry a 5xx or a lost answer blindly (default true). A create says false: Neon may have made
   * the project, so it looks first (NeonApiError.ambiguous) and only then asks again.
   */
  retryAmbiguous?: boolean;
}

export interface NeonApiOptions {
  apiKey: string;
  /** Base URL, e.g. https://console.neon.tech/api/v2. */
  baseUrl: string;
  retry?: Partial<RetryPolicy>;
  /** One HTTP request's limit. */
  requestTimeoutMs?: number;
  /** Requests at once (a region's limiter). */
  maxConcurrency?: number;
  log: Logger;
}

interface Failure {
  status: number | undefined;
  retryable: boolean;
  /** Neon may have carried the request out (no answer, or a 5xx). */
  ambiguous: boolean;
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
      ambiguous: status >= 500,
      retryAfterMs: retryAfterMs(headers?.['retry-after']),
      detail: `HTTP ${status}${message ? `: ${message}` : ''}${request}`,
    };
  }
  const code = e.code ?? 'unknown';
  // Refused before sending: Neon never saw it. Anything else may have reached Neon.
  return { status: undefined, retryable: RETRY_CODES.has(code), ambiguous: code !== 'ECONNREFUSED', retryAfterMs: undefined, detail: `no answer (${code}${e.message ? `: ${e.message}` : ''})` };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Neon's API through @neondatabase/api-client, through the region's RequestLimiter, with
 * retries: 423 and 5xx answers and lost connections are tried again a bounded number of times
 * after exponential backoff with jitter; 429s until the call's deadline, after the Retry-After
 * Neon sends (which pauses the whole region); then the call fails with a NeonApiError that says why.
 */
export class NeonApi {
  private readonly client: Client;
  private readonly retry: RetryPolicy;
  readonly limiter: RequestLimiter;

  constructor(private readonly opts: NeonApiOptions) {
    this.client = createApiClient({ apiKey: opts.apiKey, baseURL: opts.baseUrl, timeout: opts.requestTimeoutMs ?? 30_000 });
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.limiter = new RequestLimiter(opts.maxConcurrency ?? DEFAULT_NEON_CONCURRENCY);
  }

  /** Backoff before attempt n+1: exponential, "equal jitter" (half fixed, half random). */
  private backoffMs(attempt: number): number {
    const ceiling = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** Calls one operation; a deadline (epoch ms) stops retrying once the next wait would pass it. */
  async call<K extends NeonOperation>(operation: K, args: Parameters<Client[K]>, opts: CallOptions | number = {}): Promise<NeonResult<K>> {
    const { deadline = Infinity, retryAmbiguous = true } = typeof opts === 'number' ? { deadline: opts } : opts;
    const method = this.client[operation] as (...a: unknown[]) => Promise<{ data: NeonResult<K> }>;
    let attempt = 0;
    for (let tries = 1; ; tries++) {
      let failure: Failure;
      try {
        const result = await this.limiter.run(() => method(...args));
        this.limiter.succeeded();
        return result.data;
      } catch (err) {
        failure = describe(err);
      }
      const throttled = failure.status === 429;
      const waitTooLong = failure.retryAfterMs !== undefined && failure.retryAfterMs > this.retry.maxRetryAfterMs;
      // The whole region pauses for a Retry-After pgfleet waits for; a longer one only fails this call.
      if (throttled) this.limiter.throttled(waitTooLong ? undefined : failure.retryAfterMs);
      else attempt++;
      const fail = (why: string) =>
        new NeonApiError(`Neon API ${operation} failed${why}: ${failure.detail}`, operation, failure.status, tries, failure.ambiguous);
      if (!failure.retryable) throw fail('');
      if (failure.ambiguous && !retryAmbiguous) throw fail('');
      if (attempt >= this.retry.attempts) throw fail(` after ${tries} attempts`);
      if (waitTooLong) {
        throw fail(`; Neon asks to wait ${Math.ceil(failure.retryAfterMs! / 1000)} s before trying again`);
      }
      // A 429 without Retry-After backs off by how many 429s in a row this call met.
      const wait = failure.retryAfterMs ?? this.backoffMs(throttled ? Math.min(tries, 6) : attempt);
      if (Date.now() + wait > deadline) throw fail(` (gave up after ${tries} attempts: out of time)`);
      this.opts.log.warn({ neon_operation: operation, status: failure.status, attempt: tries, wait_ms: Math.round(wait) }, 'Neon API call failed; retrying');
      await sleep(wait);
    }
  }
}
