// A node-postgres session with one endpoint through the proxy, named by options (no DNS needed).
import pg from 'pg';
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
