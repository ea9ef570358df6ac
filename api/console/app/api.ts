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
  const init: RequestInit = { method, headers: { authorization: `Bearer ${withKey}`, ...headers }, cache: 'no-store' };
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

/** Checks a key against the API and keeps it: the operator key may list partners, a partner key may list databases. */
export async function signIn(candidate: string): Promise<Kind> {
  const asOperator = await send('GET', '/v1/partners', undefined, {}, candidate);
  let kind: Kind;
  if (asOperator.ok) kind = 'operator';
  else if (asOperator.status === 403) {
    const asPartner = await send('GET', '/v1/databases?limit=1', undefined, {}, candidate);
    if (!asPartner.ok) throw await errorOf(asPartner);
    kind = 'partner';
  } else throw await errorOf(asOperator);
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
