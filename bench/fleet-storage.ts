/**
 * A fleet of two gateways on a shared S3 server (s3rver), measured in one run:
 *  - RTO: from a node's kill -9 (its data dir kept, so the same node could come back) to the first
 *    answered query of each of its databases on the other node; beside the baseline of the same
 *    node restarted with its disk (what a fleet without a shared store waits for);
 *  - drain: seconds per database, and the pause a connected client sees (its session ends, it
 *    reconnects); beside a suspend and a wake of a database on one node.
 * Run: node --import ./bin/load-ts.mjs bench/fleet-storage.ts [databases=4]     (PGFLEET_NODE_DEAD_AFTER=5 here)
 */
import fs from 'node:fs';
import pg from 'pg';
import { ADMIN_KEY, type GatewayProcess, call, startFleet } from '../test/fleet/topology.ts';
import { startS3 } from '../test/s3-server.ts';
import { percentile, timed } from './stats.ts';

const count = Number(process.argv[2] ?? 4);
const DEAD_AFTER_S = 5;
const s3 = await startS3();
const fleet = await startFleet({ gateways: 2, env: { PGFLEET_STORAGE_URL: s3.url('bench'), PGFLEET_NODE_DEAD_AFTER: String(DEAD_AFTER_S) } });
const [a, b] = fleet.gateways as [GatewayProcess, GatewayProcess];
const key = (await call(a.apiUrl, 'POST', '/v1/partners', ADMIN_KEY, { name: 'bench' })).body.api_key;
const ca = fs.readFileSync(fleet.caPath);

const client = (port: number, db: any) => {
  const c = new pg.Client({
    host: '127.0.0.1', port, user: db.role, password: db.password, database: db.database, ssl: { ca, servername: 'localhost' }, options: `endpoint=${db.endpoint_id}`,
  });
  c.on('error', () => {});
  return c;
};
async function query(port: number, db: any, sql = 'SELECT count(*) FROM t'): Promise<void> {
  const c = client(port, db);
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}
/** Retries until a query answers; the ms from `since`. */
async function untilAnswered(port: number, db: any, since: number): Promise<number> {
  for (;;) {
    try {
      await query(port, db);
      return Date.now() - since;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
async function databasesOn(g: GatewayProcess, n: number, tag: string): Promise<any[]> {
  const out: any[] = [];
  for (let i = 0; out.length < n && i < n * 4; i++) {
    const db = (await call(g.apiUrl, 'POST', '/v1/databases', key, { user_id: `${tag}-${i}`, suspend_timeout_seconds: 0 })).body;
    const nodes = (await call(g.apiUrl, 'GET', '/v1/nodes', ADMIN_KEY)).body.nodes as { id: string; database_ids: string[] }[];
    if (!nodes.find((x) => x.id === g.nodeId)!.database_ids.includes(db.id)) continue;
    await query(g.proxyPort, db, 'CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g');
    out.push(db);
  }
  return out;
}

try {
  // Baseline for the RTO: the node killed and started again with its disk.
  const own = await databasesOn(a, 1, 'restart');
  const killedAt0 = Date.now();
  await a.kill9();
  await a.restart();
  const restartMs = await untilAnswered(a.proxyPort, own[0], killedAt0);

  const lost = await databasesOn(a, count, 'lost');
  const killedAt = Date.now();
  await a.kill9();
  const rto = await Promise.all(lost.map((db) => untilAnswered(b.proxyPort, db, killedAt)));
  console.log(`\nRTO: kill -9 of a node to the first answered query of each of its ${count} databases on the other node (PGFLEET_NODE_DEAD_AFTER=${DEAD_AFTER_S} s)`);
  console.log(`  from the store, elsewhere   p50 ${percentile(rto, 50).toFixed(0)} ms  max ${Math.max(...rto).toFixed(0)} ms (of which the node is declared dead after ${DEAD_AFTER_S * 1000} ms)`);
  console.log(`  baseline: the node restarted with its disk  ${restartMs.toFixed(0)} ms   ratio ${(percentile(rto, 50) / restartMs).toFixed(2)}`);
  await a.restart();

  // Drain B (which now holds the lost databases and more): one client stays connected to each.
  const more = await databasesOn(b, Math.max(0, count - lost.length), 'drain');
  const onB = [...lost, ...more];
  const sessions = await Promise.all(onB.map(async (db) => {
    const c = client(b.proxyPort, db);
    await c.connect();
    await c.query('SELECT 1');
    return { db, c, ended: new Promise<number>((resolve) => c.on('error', () => resolve(Date.now()))) };
  }));
  const suspendWake: number[] = [];
  for (const { db } of sessions.slice(0, 3)) {
    suspendWake.push(await timed(async () => {
      await call(b.apiUrl, 'POST', `/v1/databases/${db.id}/suspend`, key);
      await query(b.proxyPort, db);
    }));
  }
  const drainStart = Date.now();
  await call(a.apiUrl, 'POST', `/v1/nodes/${b.nodeId}/drain`, ADMIN_KEY);
  const pauses = await Promise.all(sessions.map(async ({ db, ended }) => {
    const at = await ended;
    return untilAnswered(b.proxyPort, db, at);
  }));
  for (;;) {
    const nodes = (await call(a.apiUrl, 'GET', '/v1/nodes', ADMIN_KEY)).body.nodes as { id: string; database_ids: string[] }[];
    if (nodes.find((x) => x.id === b.nodeId)!.database_ids.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const drainMs = Date.now() - drainStart;
  console.log(`\nDrain of a node holding ${onB.length} databases, each with a connected client`);
  console.log(`  ${(drainMs / onB.length / 1000).toFixed(2)} s per database (${(drainMs / 1000).toFixed(1)} s in all)`);
  console.log(`  pause a client sees (session ended → next query answered): p50 ${percentile(pauses, 50).toFixed(0)} ms  max ${Math.max(...pauses).toFixed(0)} ms`);
  console.log(`  baseline: a suspend and a wake on one node  p50 ${percentile(suspendWake, 50).toFixed(0)} ms   ratio ${(percentile(pauses, 50) / percentile(suspendWake, 50)).toFixed(2)}`);
} finally {
  await fleet.stop();
  await s3.close();
}
