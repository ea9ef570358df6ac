// A running pgfleet for API tests, and a small HTTP client for it.
import fs from 'node:fs';
import { type Gateway, startGateway } from '../main.ts';
import { testConfig } from './helpers.ts';

export const ADMIN_KEY = 'test-admin-key-0123456789';

export interface Answer<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface RequestOptions {
  key?: string;
  /** An object is sent as JSON; a string as is (with a JSON content type). */
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ApiHarness {
  gateway: Gateway;
  url: string;
  request<T = any>(method: string, path: string, opts?: RequestOptions): Promise<Answer<T>>;
  /** A new partner; returns its id and key. */
  partner(name?: string): Promise<{ id: string; key: string }>;
  stop(): Promise<void>;
}

export async function startApi(env: Record<string, string> = {}): Promise<ApiHarness> {
  const config = testConfig(env);
  const gateway = await startGateway(config);
  const request = async <T = any>(method: string, path: string, opts: RequestOptions = {}): Promise<Answer<T>> => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.key) headers.authorization = `Bearer ${opts.key}`;
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    }
    const res = await fetch(`${gateway.apiUrl}${path}`, { method, headers, body });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
  };
  return {
    gateway,
    url: gateway.apiUrl,
    request,
    async partner(name = 'acme') {
      const res = await request('POST', '/v1/partners', { key: ADMIN_KEY, body: { name } });
      if (res.status !== 201) throw new Error(`partner create failed: ${res.status} ${JSON.stringify(res.body)}`);
      return { id: res.body.id, key: res.body.api_key };
    },
    async stop() {
      await gateway.stop();
      fs.rmSync(config.dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs fn over items, `concurrency` at a time, keeping the order of results. */
export async function pooled<T, R>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  }));
  return results;
}
