// What tests on the pgfleet side of the fake Neon share: the config of a neon region, and a query on a compute.
import pg from 'pg';
import type { ComputeAddress } from '../../src/providers/provider.ts';
import { FAKE_API_KEY, type FakeNeon } from './fake-neon.ts';

/** Environment that makes `aws-us-east-2` a neon region served by the fake. */
export function neonRegionEnv(fake: FakeNeon): Record<string, string> {
  return {
    PGFLEET_REGIONS: JSON.stringify({ 'aws-us-east-2': { provider: 'neon', region_id: 'aws-us-east-2', api_key_env: 'NEON_API_KEY' } }),
    NEON_API_KEY: FAKE_API_KEY,
    NEON_API_HOST: fake.baseUrl,
    PGFLEET_NEON_CA_FILE: fake.caFile,
    PGFLEET_NEON_PORT: String(fake.port),
    PGFLEET_NEON_OPERATION_TIMEOUT: '20',
  };
}

/** Runs sql on a (fake) Neon compute the way the proxy reaches it: verified TLS, the role's password. */
export async function queryCompute(address: ComputeAddress, role: string, database: string, sql: string): Promise<any[]> {
  if (address.kind !== 'tcp') throw new Error('expected a TCP address');
  const c = new pg.Client({
    host: address.host, port: address.port, user: role, database, password: address.passwords.get(role),
    ssl: { ca: address.ca, servername: address.servername, rejectUnauthorized: true },
  });
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}
