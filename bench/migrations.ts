/**
 * Fleet-wide migrations: databases migrated per second by one job (a small DDL, `concurrency` at a
 * time) across suspended databases, beside a loop that connects through the proxy and runs the same
 * SQL in one database at a time (what a partner writes without pgfleet), in the same run; and the
 * peak of running computes during the job (bounded by concurrency). Then a create from a partner
 * template beside an empty create (API latency), and each one's first start.
 * Goals: job ≥ 5× the loop; create from a template ≤ 1.5× an empty create.
 * Run: node --import ./bin/load-ts.mjs bench/migrations.ts [databases=1000] [loop databases=100] [concurrency=8] [creates=100]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startGateway } from '../main.ts';
import { loadConfig } from '../src/config.ts';
import { percentile, printLatencyTable, timed } from './stats.ts';

const databases = Number(process.argv[2] ?? 1000);
const loopDatabases = Number(process.argv[3] ?? 100);
const concurrency = Number(process.argv[4] ?? 8);
const creates = Number(process.argv[5] ?? 100);
const ADMIN_KEY = 'bench-admin-key-0123456789';
const SQL = 'ALTER TABLE items ADD COLUMN note text';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfleet-bench-migrations-'));
fs.chmodSync(dataDir, 0o711);
const gateway = await startGateway(loadConfig({
  PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: ADMIN_KEY,
  PGFLEET_API_RATE_LIMIT: '10000000', PGFLEET_MAX_COMPUTES: String(Math.max(64, concurrency * 2)),
}));
const call = async (method: string, route: string, key: string, body?: unknown) => {
  const res = await fetch(`${gateway.apiUrl}${route}`, {
    method, headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = res.status === 204 ? undefined : await res.json();
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(answer)}`);
  return answer as any;
};
const pooled = async <T>(items: T[], n: number, fn: (item: T) => Promise<unknown>) => {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
};
const waitJob = async (key: string, id: string) => {
  for (;;) {
    const job = await call('GET', `/v1/migrations/${id}`, key);
    if (['finished', 'failed', 'cancelled'].includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
};

try {
  const { api_key: key } = await call('POST', '/v1/partners', ADMIN_KEY, { name: 'bench' });
  const made: any[] = [];
  await pooled(Array.from({ length: databases + loopDatabases }, (_, i) => i), 8, async (i) => {
    made.push(await call('POST', '/v1/databases', key, { user_id: `u${i}`, labels: { set: i < databases ? 'job' : 'loop' } }));
  });
  // Every database gets its table and has run once (its first start is not what is measured), then is suspended.
  const t0 = Date.now();
  const prep = await waitJob(key, (await call('POST', '/v1/migrations', key, { name: '001_items', sql: 'CREATE TABLE items (id int PRIMARY KEY)', concurrency })).id);
  console.log(`prepared ${prep.counts.applied}/${prep.counts.total} databases (table made, first start, suspended again) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (prep.counts.applied !== databases + loopDatabases) throw new Error(`preparation: ${JSON.stringify(prep.counts)} ${JSON.stringify(prep.failures.slice(0, 3))}`);

  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, gateway.core.computes.activeCount)), 10);
  const jobStart = performance.now();
  const job = await waitJob(key, (await call('POST', '/v1/migrations', key, { name: '002_note', sql: SQL, concurrency, selector: { labels: { set: 'job' } } })).id);
  const jobSeconds = (performance.now() - jobStart) / 1000;
  clearInterval(sampler);
  const jobRate = job.counts.applied / jobSeconds;
  const perDb = (await call('GET', `/v1/migrations/${job.id}/databases?state=applied&limit=1000`, key)).databases.map((d: any) => d.duration_ms);
  console.log(`\njob: ${job.counts.applied} of ${databases} suspended databases migrated (${job.counts.failed} failed) in ${jobSeconds.toFixed(1)} s, concurrency ${concurrency}: ${jobRate.toFixed(2)} databases/s`);
  console.log(`  SQL time per database p50 ${percentile(perDb, 50)} ms; peak running computes during the job ${peak} (concurrency ${concurrency})`);

  let loopRate: number | undefined;
  try {
    const loopDbs = made.filter((d) => d.labels.set === 'loop');
    const ca = fs.readFileSync(gateway.caPath!);
    const loopStart = performance.now();
    for (const db of loopDbs) {
      const c = new pg.Client({
        host: '127.0.0.1', port: gateway.proxyPort, user: db.role, password: db.password, database: db.database,
        ssl: { ca, servername: 'localhost' }, options: `endpoint=${db.endpoint_id}`,
      });
      await c.connect();
      await c.query(`BEGIN; ${SQL}; COMMIT`);
      await c.end();
    }
    const loopSeconds = (performance.now() - loopStart) / 1000;
    loopRate = loopDbs.length / loopSeconds;
    console.log(`loop through the proxy, one at a time: ${loopDbs.length} suspended databases in ${loopSeconds.toFixed(1)} s: ${loopRate.toFixed(2)} databases/s (computes left running to their idle timeout)`);
  } catch (err) {
    console.log(`loop baseline failed: ${(err as Error).message}`);
  }
  if (loopRate !== undefined) {
    const ratio = jobRate / loopRate;
    console.log(`ratio job / loop: ${ratio.toFixed(2)}× (goal ≥ 5×: ${ratio >= 5 ? 'met' : 'NOT met'})`);
  }

  // Create from a template beside an empty create.
  const source = made[0];
  const tpl = await call('POST', '/v1/templates', key, { database_id: source.id, name: 'bench-v1' });
  const fromTemplate: number[] = [];
  const empty: number[] = [];
  const fresh: any[] = [];
  for (let i = 0; i < creates; i++) {
    // Interleaved, so that both see the same load.
    empty.push(await timed(async () => fresh.push(await call('POST', '/v1/databases', key, { user_id: `e${i}` }))));
    fromTemplate.push(await timed(async () => fresh.push(await call('POST', '/v1/databases', key, { user_id: `t${i}`, template: tpl.id }))));
  }
  const emptyRow = { name: `POST /v1/databases, empty (${creates})`, samples: empty };
  printLatencyTable('Create: from a template vs empty', [emptyRow, { name: `POST /v1/databases {template} (${creates})`, samples: fromTemplate }], emptyRow);
  const createRatio = percentile(fromTemplate, 50) / percentile(empty, 50);
  console.log(`create from a template / empty create (p50): ${createRatio.toFixed(2)}× (goal ≤ 1.5×: ${createRatio <= 1.5 ? 'met' : 'NOT met'})`);
  const firstStarts = { empty: [] as number[], template: [] as number[] };
  for (const db of fresh.slice(0, 20)) {
    const ms = await timed(() => call('POST', `/v1/databases/${db.id}/wake`, key));
    (db.template ? firstStarts.template : firstStarts.empty).push(ms);
    await call('POST', `/v1/databases/${db.id}/suspend`, key);
  }
  const startRow = { name: 'first start, empty', samples: firstStarts.empty };
  printLatencyTable('First start (POST …/wake): made from a template vs empty', [startRow, { name: 'first start, from a template', samples: firstStarts.template }], startRow);
} finally {
  await gateway.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
