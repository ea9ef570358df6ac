import crypto from 'node:crypto';
import type pg from 'pg';
import type { Catalog } from '../catalog/catalog.ts';
import { GroupWrites } from '../catalog/group-writes.ts';
import { type PreparedStatement, prepared } from '../catalog/prepared.ts';
import { BadRequestError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type EventType, SQL_MATCHES } from './types.ts';

/** What a change tells: its type, whose it is, and what a partner needs to act on it. */
export interface NewEvent {
  type: EventType;
  /** null: an operator's event (no partner sees it). */
  partnerId: string | null;
  databaseId?: string | null;
  data: Record<string, unknown>;
  /** A deterministic id (an hour's usage, a quota's month): an event already recorded under it is not recorded again. */
  id?: string;
}

export interface EventRecord {
  id: string;
  type: string;
  partnerId: string | null;
  databaseId: string | null;
  data: Record<string, unknown>;
  createdAt: Date;
}

export interface EventFilter {
  /** undefined: every partner's (the operator); null: operator events only. */
  partnerId?: string | null;
  databaseId?: string;
  /** Types or patterns (database.*). */
  types?: string[];
  /** Where to start without a cursor. */
  since?: Date;
  cursor?: string;
  limit: number;
}

/** A statement runner: the catalog, or a client inside the caller's transaction. */
export interface Queryable {
  query(statement: PreparedStatement, values: unknown[]): Promise<pg.QueryResult>;
}

/** Told to every gateway's dispatcher when a recorded event is owed to a webhook. */
export const OUTBOX_CHANNEL = 'pgfleet_outbox';

/** Rows whose transaction is over: no row with a smaller (txid, seq) can still appear. */
export const SETTLED = 'txid < pg_snapshot_xmin(pg_current_snapshot())';

// Every event of a batch, in order, and one delivery per webhook that wants it; the dispatchers are
// told at commit when one is owed (Postgres sends one notification per transaction).
const RECORD = prepared(`
  WITH e AS (
    INSERT INTO events (id, type, partner_id, database_id, data)
    SELECT id, type, partner_id, database_id, data::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(id, type, partner_id, database_id, data)
    ON CONFLICT (id) DO NOTHING RETURNING seq, txid, type, partner_id, database_id),
  d AS (
    INSERT INTO webhook_deliveries (webhook_id, event_seq, txid, ordering_key)
    SELECT w.id, e.seq, e.txid, COALESCE(e.database_id, e.partner_id, 'operator') FROM e
      JOIN webhooks w ON (w.partner_id = e.partner_id OR w.partner_id IS NULL) AND ${SQL_MATCHES('e.type', 'w.event_types')}
    RETURNING 1)
  SELECT (SELECT count(*) FROM e)::int AS recorded, (SELECT count(pg_notify('${OUTBOX_CHANNEL}', '')) FROM d)::int AS owed`);

const eventId = () => `evt_${crypto.randomBytes(12).toString('base64url')}`;

function encodeCursor(txid: string, seq: number): string {
  return Buffer.from(`${txid}.${seq}`).toString('base64url');
}

function decodeCursor(cursor: string): [string, number] {
  const m = /^(\d{1,20})\.(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new BadRequestError('cursor: not a cursor this API returned');
  return [m[1]!, Number(m[2])];
}

const toRecord = (r: any): EventRecord & { cursor: string } => ({
  id: r.id, type: r.type, partnerId: r.partner_id, databaseId: r.database_id, data: r.data, createdAt: r.created_at, cursor: encodeCursor(r.txid, Number(r.seq)),
});

/**
 * The event log and outbox: record() writes events and, in the same statement, one delivery per
 * webhook that wants each. Call it inside the transaction of the change (pass its client), or
 * right after the change committed (recordAfter).
 */
export class Events {
  /** Events recorded after their change: a burst of them shares statements. */
  private readonly after = new GroupWrites<NewEvent>((events) => this.record(events));

  constructor(private readonly catalog: Catalog, private readonly log: Logger) {}

  /** Records the events in one statement; how many were new (one with a deterministic id already recorded is not). */
  async record(events: NewEvent | NewEvent[], db: Queryable = this.catalog): Promise<number> {
    const list = Array.isArray(events) ? events : [events];
    const data = list.map((e) => JSON.stringify({ ...(e.partnerId ? { partner_id: e.partnerId } : {}), ...(e.databaseId ? { database_id: e.databaseId } : {}), ...e.data }));
    const { rows } = await db.query(RECORD,
      [list.map((e) => e.id ?? eventId()), list.map((e) => e.type), list.map((e) => e.partnerId), list.map((e) => e.databaseId ?? null), data]);
    return rows[0].recorded;
  }

  /** For changes already committed: records the events, and logs (never throws) when the catalog refuses. */
  recordAfter(...events: NewEvent[]): Promise<void> {
    return this.after.add(events).catch((err) =>
      this.log.error({ err: String(err), types: events.map((e) => e.type), database: events[0]?.databaseId }, 'could not record an event'));
  }

  /** Waits for the events being recorded after their change (a stop does, before the catalog closes). */
  settle(): Promise<void> {
    return this.after.settle();
  }

  /** Events in the order they happened, after the cursor (or from `since`, else the oldest kept). */
  async list(f: EventFilter): Promise<{ items: EventRecord[]; nextCursor: string | null }> {
    const where = [SETTLED];
    const values: unknown[] = [];
    const add = (sql: (n: string) => string, v: unknown) => {
      values.push(v);
      where.push(sql(`$${values.length}`));
    };
    if (f.partnerId === null) where.push('partner_id IS NULL');
    else if (f.partnerId !== undefined) add((n) => `partner_id = ${n}`, f.partnerId);
    if (f.databaseId !== undefined) add((n) => `database_id = ${n}`, f.databaseId);
    if (f.types?.length) add((n) => SQL_MATCHES('type', `${n}::text[]`), f.types);
    if (f.cursor !== undefined) {
      const [txid, seq] = decodeCursor(f.cursor);
      values.push(txid, seq);
      where.push(`(txid, seq) > ($${values.length - 1}::xid8, $${values.length}::int8)`);
    } else if (f.since !== undefined) {
      add((n) => `created_at >= ${n}`, f.since);
    }
    values.push(f.limit);
    const { rows } = await this.catalog.query(
      `SELECT seq, txid::text, id, type, partner_id, database_id, data, created_at FROM events
        WHERE ${where.join(' AND ')} ORDER BY txid, seq LIMIT $${values.length}`, values);
    const items = rows.map(toRecord);
    return { items, nextCursor: items.length ? items[items.length - 1]!.cursor : (f.cursor ?? null) };
  }

  /** Drops events (and their finished deliveries) older than the given age; pending deliveries keep theirs. */
  async purge(olderThanMs: number): Promise<number> {
    const { rowCount } = await this.catalog.query(
      `DELETE FROM events e WHERE e.created_at < now() - make_interval(secs => $1)
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq AND d.state = 'pending')`,
      [olderThanMs / 1000]);
    return rowCount ?? 0;
  }
}
