import crypto from 'node:crypto';

/**
 * Each database's migration key, derived from the gateway's secret key (PGFLEET_SECRET_KEY, or the
 * one kept in the data dir; the same on every gateway of a fleet). Its compute keeps it where only
 * the superuser reads it (src/providers/local/migration-record.ts); a record of a migration needs the
 * proof computed from it, so tenants can read `pgfleet.migrations` but not write it.
 */
export class MigrationKeys {
  constructor(private readonly secret: Buffer) {}

  keyOf(databaseId: string): string {
    return crypto.createHmac('sha256', this.secret).update(`pgfleet-migrations:${databaseId}`).digest('hex');
  }

  /** What `pgfleet.record_migration` checks: sha256 of "<key>:<name>", in hex. */
  proof(databaseId: string, name: string): string {
    return crypto.createHash('sha256').update(`${this.keyOf(databaseId)}:${name}`, 'utf8').digest('hex');
  }
}
