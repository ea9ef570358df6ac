import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { Branches } from './branches.ts';
import type { Catalog } from './catalog/catalog.ts';
import type { Databases } from './databases.ts';
import type { NewDatabase } from './database-records.ts';
import { BadRequestError, ConflictError, NotFoundError, PgfleetError } from './errors.ts';
import type { Regions } from './regions.ts';

/**
 * A partner template: a point-in-time copy of one of a partner's databases (or branches), kept as
 * long as the template exists. ("Template" alone names the per-major compute template in
 * src/providers/local/templates.ts.) Its data is a hidden database of its own (kind 'template'):
 * made as a copy of the source branch at its first start, which happens here, at once, and whose
 * stop takes its first base backup (from then on it needs nothing of the source). Migrations can
 * select it like a database. A database made from it names the template's main branch in
 * copy_of_branch: nothing runs at create, and its first start copies the template's files (as a
 * branch is made) instead of the empty compute template's: the same cost as any first start.
 *
 * Local regions only: on a neon region a database is a Neon project, and Neon copies data only
 * between branches of one project; a copy of a template project's branch would not be a project of
 * its own (its deletion, quotas and history would be the template's), and a copy made by SQL is
 * not "no SQL at create". A neon database or template id answers 400 template_unsupported_region.
 */
export interface PartnerTemplate {
  id: string;
  partnerId: string;
  name: string;
  databaseId: string;
  sourceDatabaseId: string;
  sourceBranch: string;
  region: string;
  pgVersion: number;
  databaseName: string;
  ownerRole: string;
  roles: string[];
  branchId: string;
  createdAt: Date;
}

const TEMPLATE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** A 400 whose code says the request and the template disagree. */
export class TemplateMismatchError extends PgfleetError {
  constructor(message: string, code = 'template_mismatch') {
    super(message, '22023', 400, code);
  }
}

const SELECT = `
  SELECT t.*, d.region, d.pg_version, d.database_name, d.owner_role, b.id AS branch_id,
         ARRAY(SELECT r.name FROM roles r WHERE r.database_id = d.id ORDER BY r.created_at, r.name) AS roles
    FROM partner_templates t JOIN databases d ON d.id = t.database_id JOIN branches b ON b.database_id = d.id AND b.parent_id IS NULL`;

const toTemplate = (r: any): PartnerTemplate => ({
  id: r.id, partnerId: r.partner_id, name: r.name, databaseId: r.database_id, sourceDatabaseId: r.source_database_id, sourceBranch: r.source_branch,
  region: r.region, pgVersion: r.pg_version, databaseName: r.database_name, ownerRole: r.owner_role, roles: r.roles, branchId: r.branch_id, createdAt: r.created_at,
});

export class PartnerTemplates {
  constructor(
    private readonly catalog: Catalog,
    private readonly databases: Databases,
    private readonly branches: Branches,
    private readonly regions: Regions,
    private readonly log: Logger,
  ) {}

  async create(partnerId: string, input: { databaseId: string; branch?: string; name: string }): Promise<PartnerTemplate> {
    if (!TEMPLATE_NAME.test(input.name)) throw new BadRequestError('name: must be 1 to 100 characters of A-Z, a-z, 0-9, ".", "_" and "-", starting with a letter or digit');
    const source = await this.databases.get(partnerId, input.databaseId);
    if (this.regions.get(source.region).provider.name !== 'local') {
      throw new TemplateMismatchError(`database_id: "${source.id}" is in region "${source.region}" (neon): templates are made of databases in local regions`, 'template_unsupported_region');
    }
    const branch = await this.branches.get(partnerId, source.id, input.branch);
    const taken = await this.catalog.query('SELECT 1 FROM partner_templates WHERE partner_id = $1 AND name = $2', [partnerId, input.name]);
    if (taken.rowCount) throw new ConflictError(`template "${input.name}" already exists`);
    const id = `tpl-${crypto.randomBytes(8).toString('hex')}`;
    const { database } = await this.databases.create({
      partnerId, userId: `template:${id}`, name: input.name, region: source.region, roleName: source.ownerRole, databaseName: source.databaseName,
      pgVersion: source.pgVersion, kind: 'template', otherRoles: source.roles, copyOf: branch.id, suspendTimeoutSeconds: 60,
    });
    try {
      await this.catalog.query(
        `INSERT INTO partner_templates (id, partner_id, name, database_id, source_database_id, source_branch) VALUES ($1, $2, $3, $4, $5, $6)`,
        [id, partnerId, input.name, database.id, source.id, branch.name]);
      // The copy is made now (the template is of this moment), and its stop takes the template's own first backup.
      await this.databases.cycle(partnerId, database.id, 'template');
      await this.catalog.query(`UPDATE partner_templates SET state = 'ready' WHERE id = $1`, [id]);
    } catch (err) {
      this.log.warn({ template: id, err: String(err) }, 'could not make a partner template');
      await this.catalog.query('DELETE FROM partner_templates WHERE id = $1', [id]).catch(() => {});
      await this.databases.delete(partnerId, database.id, 'template').catch(() => {});
      if ((err as { code?: string }).code === '23505') throw new ConflictError(`template "${input.name}" already exists`);
      throw err;
    }
    return this.get(partnerId, id);
  }

  async get(partnerId: string, id: string): Promise<PartnerTemplate> {
    const { rows } = await this.catalog.query(`${SELECT} WHERE t.id = $1 AND t.partner_id = $2 AND t.state = 'ready'`, [id, partnerId]);
    if (!rows[0]) throw new NotFoundError(`template "${id}" not found`);
    return toTemplate(rows[0]);
  }

  async list(partnerId: string): Promise<PartnerTemplate[]> {
    const { rows } = await this.catalog.query(`${SELECT} WHERE t.partner_id = $1 AND t.state = 'ready' ORDER BY t.created_at`, [partnerId]);
    return rows.map(toTemplate);
  }

  /** Deletes the template and its data; databases made from it that never started yet (they would copy it then) keep it: 409. */
  async delete(partnerId: string, id: string): Promise<void> {
    const t = await this.get(partnerId, id);
    const { rows } = await this.catalog.query<{ id: string }>(
      `SELECT d.id FROM databases d JOIN branches b ON b.database_id = d.id AND b.parent_id IS NULL
        WHERE d.copy_of_branch = $1 AND b.history_id IS NULL LIMIT 5`, [t.branchId]);
    if (rows.length) throw new ConflictError(`template "${id}" is still to be copied by databases that never started (${rows.map((r) => r.id).join(', ')}): start or delete them first`);
    await this.catalog.query('DELETE FROM partner_templates WHERE id = $1', [id]);
    await this.databases.delete(partnerId, t.databaseId, 'template');
  }

  /**
   * What a new database made from template `id` is: its region, major, owner role and database name
   * (a request naming others is a 400 template_mismatch), its roles, and the branch its first start copies.
   */
  async newDatabase(input: NewDatabase, id: string): Promise<NewDatabase> {
    const t = await this.get(input.partnerId, id).catch((err) => {
      throw err instanceof NotFoundError ? new TemplateMismatchError(`template: no template "${id}"`, 'bad_request') : err;
    });
    if (input.region !== undefined && input.region !== t.region) throw new TemplateMismatchError(`region: the template is in region "${t.region}", not "${input.region}"`);
    if (input.pgVersion !== undefined && input.pgVersion !== t.pgVersion) throw new TemplateMismatchError(`pg_version: the template is of Postgres ${t.pgVersion}, not ${input.pgVersion}`);
    if (input.roleName !== undefined && input.roleName !== t.ownerRole) throw new TemplateMismatchError(`role_name: the template's owner role is "${t.ownerRole}", not "${input.roleName}"`);
    if (input.databaseName !== undefined && input.databaseName !== t.databaseName) {
      throw new TemplateMismatchError(`database_name: the template's database is "${t.databaseName}", not "${input.databaseName}"`);
    }
    return {
      ...input, region: t.region, pgVersion: t.pgVersion, roleName: t.ownerRole, databaseName: t.databaseName, otherRoles: t.roles,
      templateId: t.id, copyOf: t.branchId,
    };
  }
}
