// Every call the console makes goes through the public API with the signed-in key.

/** An answer of the API that was not a success, with the API's own message. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export type Kind = 'operator' | 'partner';

const STORAGE_KEY = 'pgfleet.console.key';
let key: string | null = null;
let onSignedOut: (reason: string) => void = () => {};

/** The key lives in this tab's sessionStorage only: gone when the tab closes. */
export const storedKey = (): string | null => sessionStorage.getItem(STORAGE_KEY);

export function whenSignedOut(fn: (reason: string) => void): void {
  onSignedOut = fn;
}

async function send(method: string, path: string, body: unknown, headers: Record<string, string>, withKey = key): Promise<Response> {
  if (!withKey) throw new ApiError(401, 'unauthorized', 'not signed in');
  // x-pgfleet-client: the audit log tells the console's calls from other clients'.
  const init: RequestInit = { method, headers: { authorization: `Bearer ${withKey}`, 'x-pgfleet-client': 'console', ...headers }, cache: 'no-store' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  try {
    return await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'unreachable', `the gateway did not answer (${err instanceof Error ? err.message : String(err)})`);
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const { error } = JSON.parse(text) as { error: { code: string; message: string } };
    return new ApiError(res.status, error.code, error.message);
  } catch {
    return new ApiError(res.status, 'http', `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
  }
}

/** One API call; a 4xx/5xx becomes an ApiError carrying the API's message. A 401 signs the console out. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await send(method, path, body, {});
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401) signOut(err.message);
    throw err;
  }
  return (res.status === 204 ? undefined : await res.json()) as T;
}

/** A GET for polling: sends the last ETag back; `undefined` when nothing changed (304). */
export async function poll<T>(path: string, etag: { value?: string }): Promise<T | undefined> {
  const res = await send('GET', path, undefined, etag.value ? { 'if-none-match': etag.value } : {});
  if (res.status === 304) return undefined;
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401) signOut(err.message);
    throw err;
  }
  etag.value = res.headers.get('etag') ?? undefined;
  return (await res.json()) as T;
}

/** Who a key is (GET /v1/whoami): one call any valid key may make, so signing in never probes a route it may not use. */
export async function signIn(candidate: string): Promise<Kind> {
  const res = await send('GET', '/v1/whoami', undefined, {}, candidate);
  if (!res.ok) throw await errorOf(res);
  const { kind } = (await res.json()) as { kind: Kind };
  key = candidate;
  sessionStorage.setItem(STORAGE_KEY, candidate);
  return kind;
}

export function signOut(reason = ''): void {
  key = null;
  sessionStorage.removeItem(STORAGE_KEY);
  onSignedOut(reason);
}

export const query = (params: Record<string, string | number | undefined>): string => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
};
