// A node-postgres session with one endpoint through the proxy, named by options (no DNS needed),
// and the branch checks both providers share.
import pg from 'pg';
import type { Test } from 'tap';
import type { ApiHarness } from './api-client.ts';

/** What the API answers for a database or a branch: enough to connect to its endpoint. */
export interface Conn { endpoint_id: string; role: string; database: string }

export function connect(api: ApiHarness, target: Conn, password: string): pg.Client {
  const client = new pg.Client({
    host: '127.0.0.1', port: api.gateway.proxyPort, user: target.role, password, database: target.database,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${target.endpoint_id}`,
  });
  client.on('error', () => {});
  return client;
}

/** One query in a session of its own. */
export async function query(api: ApiHarness, target: Conn, password: string, sql: string): Promise<any[]> {
  const client = connect(api, target, password);
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

/**
 * A restore of a restore, on either provider: the root branch (holding `items` as `restored`) moves
 * on, then is restored to a moment between two inserts; the state before is kept. Returns the
 * `_before_` branch of that restore.
 */
export async function checkRestoreOfRestore(
  t: Test, api: ApiHarness, key: string, db: Conn & { id: string }, password: () => string, restored: number[],
): Promise<Conn & { name: string }> {
  const ids = async (target: Conn) => (await query(api, target, password(), 'SELECT id FROM items ORDER BY id')).map((r) => r.id);
  await query(api, db, password(), 'INSERT INTO items VALUES (10)');
  const [{ t: at }] = await query(api, db, password(), 'SELECT clock_timestamp() AS t');
  await query(api, db, password(), 'INSERT INTO items VALUES (11)');
  const again = await api.request('POST', `/v1/databases/${db.id}/restore`, { key, body: { at: at.toISOString(), branch: 'main' } });
  t.equal(again.status, 200, JSON.stringify(again.body));
  t.same(await ids(db), [...restored, 10], 'a restore of a restore');
  t.same(await ids(again.body.before), [...restored, 10, 11], 'its _before_ branch');
  return again.body.before;
}
