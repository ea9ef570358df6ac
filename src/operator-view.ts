import type { Catalog } from './catalog/catalog.ts';
import { BadRequestError, NotFoundError } from './errors.ts';

/** A database as the operator's search finds it: enough to fetch it as its partner would. */
export interface FoundDatabase {
  id: string;
  partnerId: string;
}

const encode = (createdUs: number, id: string) => Buffer.from(JSON.stringify([createdUs, id])).toString('base64url');
function decode(cursor: string): [number, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && Number.isSafeInteger(v[0]) && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    /* falls through */
  }
  throw new BadRequestError('cursor: not a cursor this API returned');
}

/**
 * Databases across partners for the operator, oldest first: `q` is a database id, an endpoint id
 * (its pooled name too), a user id, or text the name contains.
 */
export async function searchDatabases(catalog: Catalog, f: { q?: string; partnerId?: string; limit: number; cursor?: string }): Promise<{ items: FoundDatabase[]; nextCursor: string | null }> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (f.q !== undefined && f.q !== '') {
    values.push(f.q, `%${f.q.replace(/[\\%_]/g, '\\$&')}%`, f.q.replace(/-pooler$/, ''));
    where.push(`(d.id = $1 OR d.user_id = $1 OR d.name ILIKE $2
      OR EXISTS (SELECT 1 FROM endpoints e JOIN branches b ON b.id = e.branch_id WHERE b.database_id = d.id AND e.id = $3))`);
  }
  if (f.partnerId !== undefined) {
    values.push(f.partnerId);
    where.push(`d.partner_id = $${values.length}`);
  }
  if (f.cursor !== undefined) {
    const [us, id] = decode(f.cursor);
    values.push(us, id);
    where.push(`(d.created_at, d.id) > ('epoch'::timestamptz + $${values.length - 1} * interval '1 microsecond', $${values.length})`);
  }
  values.push(f.limit + 1);
  const { rows } = await catalog.query(
    `SELECT d.id, d.partner_id, (extract(epoch FROM d.created_at) * 1000000)::int8 AS created_us FROM databases d
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY d.created_at, d.id LIMIT $${values.length}`, values);
  const page = rows.slice(0, f.limit);
  const last = page[page.length - 1];
  return { items: page.map((r) => ({ id: r.id, partnerId: r.partner_id })), nextCursor: rows.length > f.limit && last ? encode(Number(last.created_us), last.id) : null };
}

/** The partner whose database this is (the operator reads any database as its partner would). */
export async function partnerOfDatabase(catalog: Catalog, databaseId: string): Promise<string> {
  const { rows } = await catalog.query('SELECT partner_id FROM databases WHERE id = $1', [databaseId]);
  if (!rows[0]) throw new NotFoundError(`database "${databaseId}" not found`);
  return rows[0].partner_id;
}
