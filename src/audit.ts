import type { Catalog } from './catalog/catalog.ts';
import { GroupWrites } from './catalog/group-writes.ts';
import { prepared } from './catalog/prepared.ts';
import { BadRequestError } from './errors.ts';

/** One API mutation: who (a key id, never the key), what, on what, from where, and how it ended. */
export interface AuditEntry {
  /** The partner concerned: its key's, or the one an operator acted on; null for the operator's own business. */
  partnerId: string | null;
  actor: 'operator' | 'partner';
  keyId: string;
  /** The client as it named itself (pgfleet-cli/…, console, a user agent). */
  client: string | null;
  /** The API operation (createDatabase, resetRolePassword, …). */
  action: string;
  method: string;
  route: string;
  /** The resource acted on (a database, branch, partner, webhook id). */
  target: string | null;
  requestId: string;
  sourceAddress: string;
  status: number;
  /** ok, or the error code of the answer. */
  result: string;
  /** The request body with every secret replaced. */
  request: unknown;
}

export interface AuditFilter {
  /** undefined: every partner's (the operator). */
  partnerId?: string;
  keyId?: string;
  action?: string;
  target?: string;
  result?: 'ok' | 'error';
  from?: Date;
  to?: Date;
  /** Entries older than this one (a `next_cursor`). */
  cursor?: string;
  limit: number;
}

const toEntry = (r: any): AuditEntry & { seq: number; at: Date } => ({
  seq: Number(r.seq), at: r.at, partnerId: r.partner_id, actor: r.actor, keyId: r.key_id, client: r.client, action: r.action,
  method: r.method, route: r.route, target: r.target, requestId: r.request_id, sourceAddress: r.source_address,
  status: r.status, result: r.result, request: r.request,
});

const INSERT_ENTRIES = prepared(`
  INSERT INTO audit_log (partner_id, actor, key_id, client, action, method, route, target, request_id, source_address, status, result, request)
  SELECT partner_id, actor, key_id, client, action, method, route, target, request_id, source_address, status, result, request
    FROM jsonb_to_recordset($1::jsonb) AS r(partner_id text, actor text, key_id text, client text, action text, method text, route text,
      target text, request_id text, source_address text, status integer, result text, request jsonb)`);

/** The audit log in the catalog, kept PGFLEET_AUDIT_RETENTION. */
export class AuditLog {
  /** Entries of requests answered together share a statement. */
  private readonly writes = new GroupWrites<AuditEntry>((entries) => this.catalog.query(INSERT_ENTRIES, [JSON.stringify(entries.map((e) => ({
    partner_id: e.partnerId, actor: e.actor, key_id: e.keyId, client: e.client, action: e.action, method: e.method, route: e.route, target: e.target,
    request_id: e.requestId, source_address: e.sourceAddress, status: e.status, result: e.result, request: e.request ?? null,
  })))]));

  constructor(private readonly catalog: Catalog) {}

  /** Settles once the entry is written. */
  record(e: AuditEntry): Promise<void> {
    return this.writes.add([e]);
  }

  /** Newest first. */
  async list(f: AuditFilter): Promise<{ items: (AuditEntry & { seq: number; at: Date })[]; nextCursor: string | null }> {
    const where: string[] = [];
    const values: unknown[] = [];
    const add = (column: string, op: string, v: unknown) => {
      values.push(v);
      where.push(`${column} ${op} $${values.length}`);
    };
    if (f.partnerId !== undefined) add('partner_id', '=', f.partnerId);
    if (f.keyId !== undefined) add('key_id', '=', f.keyId);
    if (f.action !== undefined) add('action', '=', f.action);
    if (f.target !== undefined) add('target', '=', f.target);
    if (f.result === 'ok') where.push(`result = 'ok'`);
    if (f.result === 'error') where.push(`result <> 'ok'`);
    if (f.from !== undefined) add('at', '>=', f.from);
    if (f.to !== undefined) add('at', '<', f.to);
    if (f.cursor !== undefined) {
      if (!/^\d{1,19}$/.test(f.cursor)) throw new BadRequestError('cursor: not a cursor this API returned');
      add('seq', '<', f.cursor);
    }
    values.push(f.limit + 1);
    const { rows } = await this.catalog.query(
      `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${values.length}`, values);
    const items = rows.slice(0, f.limit).map(toEntry);
    return { items, nextCursor: rows.length > f.limit ? String(items[items.length - 1]!.seq) : null };
  }

  /** Removes entries older than the retention; returns how many. */
  async purge(retentionSeconds: number): Promise<number> {
    const { rowCount } = await this.catalog.query('DELETE FROM audit_log WHERE at < now() - make_interval(secs => $1)', [retentionSeconds]);
    return rowCount ?? 0;
  }
}
