// What the migration tests share: a client of a database through the proxy, and a job's end.
import fs from 'node:fs';
import pg from 'pg';
import { until } from './helpers.ts';

export interface ProxyTarget {
  port: number;
  caPath: string;
}

/** A session as the database's owner, with the password its create answered. */
export async function owner<T>(to: ProxyTarget, db: any, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({
    host: '127.0.0.1', port: to.port, user: db.role, password: db.password, database: db.database,
    ssl: { ca: fs.readFileSync(to.caPath), servername: 'localhost' }, options: `endpoint=${db.endpoint_id}`,
  });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** The SQLSTATE a statement fails with (undefined: it did not fail). */
export async function sqlstateOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/** Polls GET /v1/migrations/:id until the job is in one of `states`. */
export async function jobIn(get: (id: string) => Promise<any>, id: string, states: string[], timeoutMs = 180_000): Promise<any> {
  let job: any;
  await until(`migration ${id} to be ${states.join(' or ')}`, async () => {
    job = await get(id);
    return states.includes(job.state);
  }, timeoutMs, 100);
  return job;
}
