import type { Catalog } from '../catalog/catalog.ts';
import { BadRequestError } from '../errors.ts';

/** Which of a partner's databases a migration runs on; every part given must hold (omitted = all). */
export interface MigrationSelector {
  region?: string;
  /** Databases made from this partner template (its id). */
  template?: string;
  /** Databases whose labels include all of these. */
  labels?: Record<string, string>;
  ids?: string[];
  /** The partner's templates themselves too (those of `region`, or the one `template` names). */
  templates?: boolean;
}

/** One database or branch a job selected. */
export interface SelectedTarget {
  branchId: string;
  databaseId: string;
  branchName: string;
}

const MAX_IDS = 100_000;

export function validateSelector(raw: unknown): MigrationSelector {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new BadRequestError('selector: must be an object');
  const s = raw as Record<string, unknown>;
  for (const key of Object.keys(s)) {
    if (!['region', 'template', 'labels', 'ids', 'templates'].includes(key)) throw new BadRequestError(`selector.${key}: unknown; a selector has region, template, labels, ids and templates`);
  }
  const out: MigrationSelector = {};
  if (s.region !== undefined) {
    if (typeof s.region !== 'string' || !s.region) throw new BadRequestError('selector.region: must be a region id');
    out.region = s.region;
  }
  if (s.template !== undefined) {
    if (typeof s.template !== 'string' || !s.template) throw new BadRequestError('selector.template: must be a template id');
    out.template = s.template;
  }
  if (s.labels !== undefined) {
    if (typeof s.labels !== 'object' || s.labels === null || Array.isArray(s.labels) || Object.values(s.labels).some((v) => typeof v !== 'string')) {
      throw new BadRequestError('selector.labels: must be an object of strings');
    }
    out.labels = s.labels as Record<string, string>;
  }
  if (s.ids !== undefined) {
    if (!Array.isArray(s.ids) || s.ids.length === 0 || s.ids.length > MAX_IDS || s.ids.some((id) => typeof id !== 'string')) {
      throw new BadRequestError(`selector.ids: must be 1 to ${MAX_IDS} database ids`);
    }
    out.ids = [...new Set(s.ids as string[])];
  }
  if (s.templates !== undefined) {
    if (typeof s.templates !== 'boolean') throw new BadRequestError('selector.templates: must be true or false');
    out.templates = s.templates;
  }
  return out;
}

/**
 * The branches a selector picks among the partner's ready databases (each one's main branch, or
 * every branch with `branches`), oldest database first. Ids or a template the partner does not have are a 400.
 */
export async function resolveSelector(catalog: Catalog, partnerId: string, s: MigrationSelector, branches: boolean): Promise<SelectedTarget[]> {
  let templateDb: string | null = null;
  if (s.template !== undefined) {
    const { rows } = await catalog.query<{ database_id: string }>('SELECT database_id FROM partner_templates WHERE id = $1 AND partner_id = $2', [s.template, partnerId]);
    if (!rows[0]) throw new BadRequestError(`selector.template: no template "${s.template}"`);
    templateDb = rows[0].database_id;
  }
  if (s.ids) {
    const { rows } = await catalog.query<{ id: string }>(`SELECT id FROM databases WHERE partner_id = $1 AND kind = 'database' AND id = ANY($2)`, [partnerId, s.ids]);
    const known = new Set(rows.map((r) => r.id));
    const unknown = s.ids.filter((id) => !known.has(id));
    if (unknown.length) throw new BadRequestError(`selector.ids: no database ${unknown.slice(0, 5).map((id) => `"${id}"`).join(', ')}${unknown.length > 5 ? ` (and ${unknown.length - 5} more)` : ''}`);
  }
  const { rows } = await catalog.query<{ branch_id: string; database_id: string; name: string }>(
    `SELECT b.id AS branch_id, d.id AS database_id, b.name
       FROM databases d JOIN branches b ON b.database_id = d.id
      WHERE d.partner_id = $1 AND d.status = 'ready' AND b.state = 'ready' AND ($2 OR b.parent_id IS NULL)
        AND ($3::text IS NULL OR d.region = $3)
        AND ((d.kind = 'database' AND ($4::text IS NULL OR d.partner_template_id = $7) AND d.labels @> $5 AND ($6::text[] IS NULL OR d.id = ANY($6)))
          OR (d.kind = 'template' AND $8 AND ($4::text IS NULL OR d.id = $9)))
      ORDER BY d.kind DESC, d.created_at, d.id, b.parent_id IS NOT NULL, b.created_at`,
    [partnerId, branches, s.region ?? null, s.template ?? null, JSON.stringify(s.labels ?? {}), s.ids ?? null, s.template ?? null, s.templates === true, templateDb]);
  return rows.map((r) => ({ branchId: r.branch_id, databaseId: r.database_id, branchName: r.name }));
}
