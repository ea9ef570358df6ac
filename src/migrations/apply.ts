import tls from 'node:tls';
import pg from 'pg';

/** How the job reaches a database: through the gateway's own proxy, like any client (wake, quotas, metering, other nodes). */
export interface ProxyDoor {
  host: string;
  port: number;
  /** What the proxy's certificate is checked against: its CA, or its own chain (a partial chain is trusted). */
  ca: string;
  /** The TLS server name of an endpoint (`<endpoint>.<domain>`). */
  servername(endpointId: string): string;
  /** The gateway's domain: a certificate for it (not only `*.<domain>`: a one-label domain's wildcard matches nothing) is the proxy's too. */
  domain: string;
}

export interface ApplyTarget {
  endpointId: string;
  databaseName: string;
  role: string;
  /** A gateway token for the role: the password. */
  token: string;
  jobId: string;
  name: string;
  sql: string;
  dryRun: boolean;
  /** What pgfleet.record_migration checks. */
  proof: string;
}

export type ApplyOutcome =
  | { state: 'applied'; durationMs: number; again?: boolean }
  /** `retry`: the session could not start for a reason that passes (the compute's node away, no room now). */
  | { state: 'failed'; error: string; sqlstate: string | null; durationMs: number; retry?: boolean }
  | { state: 'skipped'; reason: string };

/** The proxy refused to start a session for these: the database is over a quota or its limits. */
const QUOTA_STATES = new Set(['53400', '53300', '53200']);
/** A migration waits at most this long for a lock a tenant's session holds. */
const LOCK_TIMEOUT = '30s';
const CONNECT_TIMEOUT_MS = 120_000;

/**
 * Runs the migration in one transaction as the database's owner: whether it has the name already
 * (then it is skipped, or counted applied when this very job recorded it before a restart), the
 * SQL, then the record, then COMMIT (ROLLBACK for a dry run). Postgres's error is the outcome, never a throw.
 */
export async function applyMigration(door: ProxyDoor, t: ApplyTarget): Promise<ApplyOutcome> {
  const client = new pg.Client({
    host: door.host, port: door.port, user: t.role, password: t.token, database: t.databaseName,
    options: `endpoint=${t.endpointId} auth=jwt`, connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    ssl: {
      ca: door.ca, allowPartialTrustChain: true, servername: door.servername(t.endpointId),
      checkServerIdentity: (host: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(host, cert) && tls.checkServerIdentity(door.domain, cert),
    } as pg.ClientConfig['ssl'], application_name: `pgfleet-migration ${t.jobId}`,
  });
  client.on('error', () => {});
  const started = performance.now();
  try {
    await client.connect();
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (e.code && QUOTA_STATES.has(e.code)) return { state: 'skipped', reason: `over quota: ${e.message}` };
    const retry = !e.code?.startsWith('28') && !e.code?.startsWith('3D');
    return { state: 'failed', error: `could not connect: ${e.message}`, sqlstate: e.code ?? null, durationMs: Math.round(performance.now() - started), retry };
  }
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ job_id: string }>('SELECT job_id FROM pgfleet.migrations WHERE name = $1', [t.name]);
    if (rows[0]) {
      await client.query('ROLLBACK');
      if (rows[0].job_id === t.jobId && !t.dryRun) return { state: 'applied', durationMs: 0, again: true };
      return { state: 'skipped', reason: `already applied (by ${rows[0].job_id})` };
    }
    await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
    const txStart = (await client.query<{ t: string }>('SELECT now()::text AS t')).rows[0].t;
    const began = performance.now();
    await client.query(t.sql);
    // The SQL's own COMMIT or ROLLBACK would leave the rest outside the transaction: refused (what it committed stays).
    if ((await client.query<{ t: string }>('SELECT now()::text AS t')).rows[0].t !== txStart) {
      await client.query('ROLLBACK').catch(() => {});
      return { state: 'failed', error: 'the SQL ended the transaction itself (COMMIT or ROLLBACK): a migration runs in the one transaction pgfleet opens', sqlstate: null, durationMs: Math.round(performance.now() - began) };
    }
    // A migration's SET ROLE or search_path must not change how it is recorded.
    await client.query('RESET ROLE');
    const durationMs = Math.round(performance.now() - began);
    if (t.dryRun) {
      await client.query('ROLLBACK');
    } else {
      await client.query('SELECT pgfleet.record_migration($1, $2, $3, $4)', [t.name, t.jobId, durationMs, t.proof]);
      await client.query('COMMIT');
    }
    return { state: 'applied', durationMs };
  } catch (err) {
    const e = err as { code?: string; message: string };
    await client.query('ROLLBACK').catch(() => {});
    return { state: 'failed', error: e.message, sqlstate: e.code ?? null, durationMs: Math.round(performance.now() - started) };
  } finally {
    await client.end().catch(() => {});
  }
}
