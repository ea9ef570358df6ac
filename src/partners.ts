import crypto from 'node:crypto';
import type { CuRange } from './autoscaling.ts';
import type { Catalog } from './catalog/catalog.ts';
import { prepared } from './catalog/prepared.ts';
import type { Databases } from './databases.ts';
import { NotFoundError } from './errors.ts';
import type { KnownKeys } from './known-keys.ts';
import { generateApiKey, hashApiKey, safeEqual } from './secrets.ts';

export interface Partner {
  id: string;
  name: string;
  createdAt: Date;
  /** The size range of its databases without their own; null = PGFLEET_AUTOSCALING. */
  defaultAutoscaling: CuRange | null;
}

/**
 * Who an API key speaks for: the operator (manages partners) or one partner (manages its
 * databases); keyId names the key in the audit log (the operator key is `operator`).
 */
export type Principal = { kind: 'operator'; keyId: string } | { kind: 'partner'; partnerId: string; keyId: string };

export type PartnerPrincipal = Extract<Principal, { kind: 'partner' }>;

export const OPERATOR_KEY_ID = 'operator';

const PARTNER_KEY_PREFIX = 'pgf_live';
/** What generateApiKey makes for partners: the prefix and 32 random bytes in base64url. */
const PARTNER_KEY_FORMAT = /^pgf_live_[A-Za-z0-9_-]{43}$/;

const toPartner = (row: any): Partner => ({
  id: row.id, name: row.name, createdAt: row.created_at,
  defaultAutoscaling: row.default_autoscaling_min_cu === null || row.default_autoscaling_min_cu === undefined
    ? null : { minCu: Number(row.default_autoscaling_min_cu), maxCu: Number(row.default_autoscaling_max_cu) },
});

/** Partners and their API keys; keys are kept as SHA-256 hashes and shown once, when made. */
export class Partners {
  constructor(
    private readonly catalog: Catalog,
    private readonly databases: Databases,
    private readonly adminKeyHash: string,
    private readonly knownKeys: KnownKeys<PartnerPrincipal>,
  ) {}

  async create(name: string): Promise<{ partner: Partner; apiKey: string }> {
    const id = `pt-${crypto.randomBytes(8).toString('hex')}`;
    const apiKey = generateApiKey(PARTNER_KEY_PREFIX);
    const partner = await this.catalog.tx(async (c) => {
      const { rows } = await c.query('INSERT INTO partners (id, name) VALUES ($1, $2) RETURNING *', [id, name]);
      await c.query('INSERT INTO api_keys (id, partner_id, key_hash) VALUES ($1, $2, $3)', [newKeyId(), id, hashApiKey(apiKey)]);
      return toPartner(rows[0]);
    });
    return { partner, apiKey };
  }

  async list(): Promise<Partner[]> {
    const { rows } = await this.catalog.query('SELECT * FROM partners ORDER BY created_at, id');
    return rows.map(toPartner);
  }

  async get(id: string): Promise<Partner> {
    const { rows } = await this.catalog.query('SELECT * FROM partners WHERE id = $1', [id]);
    if (!rows[0]) throw new NotFoundError(`partner "${id}" not found`);
    return toPartner(rows[0]);
  }

  /** The history retention its databases get unless they set their own (null = pgfleet's default). */
  async setDefaultHistoryRetention(id: string, seconds: number | null): Promise<Partner> {
    const { rowCount } = await this.catalog.query('UPDATE partners SET default_history_retention_seconds = $2 WHERE id = $1', [id, seconds]);
    if (!rowCount) throw new NotFoundError(`partner "${id}" not found`);
    return this.get(id);
  }

  /** The size range its databases get unless they set their own (null = PGFLEET_AUTOSCALING). */
  async setDefaultAutoscaling(id: string, range: CuRange | null): Promise<Partner> {
    const { rowCount } = await this.catalog.query('UPDATE partners SET default_autoscaling_min_cu = $2, default_autoscaling_max_cu = $3 WHERE id = $1',
      [id, range?.minCu ?? null, range?.maxCu ?? null]);
    if (!rowCount) throw new NotFoundError(`partner "${id}" not found`);
    return this.get(id);
  }

  /** Revokes its keys first (nothing new can be made), then deletes every database and their data. */
  async delete(id: string): Promise<void> {
    await this.get(id);
    await this.catalog.query('UPDATE api_keys SET revoked_at = now() WHERE partner_id = $1 AND revoked_at IS NULL', [id]);
    await this.knownKeys.revoked(id);
    for (;;) {
      const page = await this.databases.list(id, { limit: 100 });
      if (page.items.length === 0) break;
      for (const db of page.items) await this.databases.delete(id, db.id);
    }
    await this.catalog.query('DELETE FROM partners WHERE id = $1', [id]);
  }

  /** A new key; every earlier key of the partner stops working at once. */
  async rotateKey(id: string): Promise<{ partner: Partner; apiKey: string }> {
    const partner = await this.get(id);
    const apiKey = generateApiKey(PARTNER_KEY_PREFIX);
    await this.catalog.tx(async (c) => {
      await c.query('UPDATE api_keys SET revoked_at = now() WHERE partner_id = $1 AND revoked_at IS NULL', [id]);
      await c.query('INSERT INTO api_keys (id, partner_id, key_hash) VALUES ($1, $2, $3)', [newKeyId(), id, hashApiKey(apiKey)]);
    });
    await this.knownKeys.revoked(id);
    return { partner, apiKey };
  }

  /** The key has the shape of a partner key (whether or not it exists). */
  couldBePartnerKey(key: string): boolean {
    return PARTNER_KEY_FORMAT.test(key);
  }

  /** The principal of a presented key, or undefined when the key is unknown or revoked. */
  async authenticate(key: string): Promise<Principal | undefined> {
    const hash = hashApiKey(key);
    if (safeEqual(hash, this.adminKeyHash)) return { kind: 'operator', keyId: OPERATOR_KEY_ID };
    // A key that cannot be a partner key costs no catalog query.
    if (!this.couldBePartnerKey(key)) return undefined;
    return this.knownKeys.lookup(hash, async () => {
      const { rows } = await this.catalog.query(KEY_OF_HASH, [hash]);
      return rows[0] ? { kind: 'partner', partnerId: rows[0].partner_id, keyId: rows[0].id } : undefined;
    });
  }
}

const KEY_OF_HASH = prepared('SELECT id, partner_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL AND partner_id IS NOT NULL');

const newKeyId = () => `key-${crypto.randomBytes(8).toString('hex')}`;
