// Requests without a valid key (issue 16, item 4): limited per client address, keys that
// cannot be valid cost no catalog query, and partners from that address or any other keep working.
import http from 'node:http';
import t from 'tap';
import { startApi } from '../api-client.ts';
import { catalogStatements } from '../helpers.ts';

const api = await startApi({ PGFLEET_API_UNAUTHENTICATED_RATE_LIMIT: '20' });
t.teardown(() => api.stop());
const { key } = await api.partner();
const port = new URL(api.url).port;

/** GET /v1/databases from a chosen loopback address; resolves the status and Retry-After. */
function get(from: string, bearer?: string): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/databases', localAddress: from, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

const catalog = api.gateway.core.catalog;
/** Lookups of API keys among the catalog statements run while fn runs. */
const keyLookups = async (fn: () => Promise<unknown>) => (await catalogStatements(catalog, fn)).filter((s) => s.includes('FROM api_keys')).length;

t.test('malformed keys are refused without a catalog query; unknown ones count; the address is then limited', async (t) => {
  t.equal((await get('127.0.0.1', key)).status, 200, 'the partner works before');
  t.equal(await keyLookups(async () => {
    for (let i = 0; i < 10; i++) t.equal((await get('127.0.0.2', `guess-${i}`)).status, 401);
  }), 0, 'keys that cannot be partner keys are not looked up');
  t.equal(await keyLookups(async () => {
    for (let i = 0; i < 10; i++) t.equal((await get('127.0.0.2', `pgf_live_${'A'.repeat(40)}${String(i).padStart(3, '0')}`)).status, 401);
  }), 10, 'well-formed unknown keys are looked up');
  t.equal(await keyLookups(async () => {
    const over = await get('127.0.0.2', `pgf_live_${'B'.repeat(43)}`);
    t.equal(over.status, 429, 'the 21st request without a valid key from that address is refused');
    t.ok(Number(over.retryAfter) > 0, 'with Retry-After');
    t.equal((await get('127.0.0.2')).status, 429, 'no key at all: refused too');
  }), 0, 'refused before any lookup');
  t.equal((await get('127.0.0.3')).status, 401, 'another address has its own budget');
  t.equal((await get('127.0.0.1', key)).status, 200, 'the partner from another address works');
  t.equal((await get('127.0.0.2', key)).status, 200, 'a partner key that authenticated lately works even from the limited address');
  t.equal((await api.request('GET', '/healthz')).status, 200, 'health checks answer');
});
