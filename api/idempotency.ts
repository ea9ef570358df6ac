import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Catalog } from '../src/catalog/catalog.ts';
import { ConflictError } from '../src/errors.ts';

export interface StoredAnswer {
  status: number;
  body: unknown;
}

export interface IdempotencyOptions {
  /** How long a key is remembered. */
  ttlSeconds: number;
  /** A claim still unanswered after this long is taken to be abandoned (its gateway died). */
  abandonedAfterSeconds: number;
  /** How long a retry waits for the first request with its key to finish before a 409. */
  waitMs: number;
}

const DEFAULTS: IdempotencyOptions = { ttlSeconds: 24 * 3600, abandonedAfterSeconds: 60, waitMs: 15_000 };

const sha256 = (text: string) => crypto.createHash('sha256').update(text).digest('hex');

/** JSON with object keys sorted, so that the same body always hashes the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What makes two requests "the same": method, route and body. */
export function fingerprint(method: string, route: string, body: unknown): string {
  return sha256(`${method} ${route}\n${canonicalJson(body)}`);
}

// The answer holds a password: it is sealed with a key only the idempotency key's holder can derive.
function answerKey(idempotencyKey: string, partnerId: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', idempotencyKey, partnerId, 'pgfleet idempotent answer v1', 32));
}

function seal(answer: StoredAnswer, key: Buffer, aad: string): Buffer {
  const iv = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(answer), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]);
}

function open(sealed: Buffer, key: Buffer, aad: string): StoredAnswer {
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(sealed.subarray(12, 28));
  return JSON.parse(Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8'));
}

/**
 * `Idempotency-Key` support: the first request with a key claims it (one catalog row, taken with
 * INSERT … ON CONFLICT), runs, and stores its answer sealed; retries with the same key and the
 * same request get that answer, with another request a 409. A failed first run frees the key.
 */
export class IdempotencyStore {
  private readonly opts: IdempotencyOptions;

  constructor(private readonly catalog: Catalog, opts: Partial<IdempotencyOptions> = {}) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  async run(
    partnerId: string,
    idempotencyKey: string,
    requestHash: string,
    execute: () => Promise<StoredAnswer>,
  ): Promise<StoredAnswer & { replayed: boolean }> {
    const keyHash = sha256(idempotencyKey);
    const key = answerKey(idempotencyKey, partnerId);
    const deadline = Date.now() + this.opts.waitMs;
    for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
      if (await this.claim(partnerId, keyHash, requestHash)) {
        let answer: StoredAnswer;
        try {
          answer = await execute();
        } catch (err) {
          await this.catalog.query('DELETE FROM idempotency_keys WHERE partner_id = $1 AND key_hash = $2 AND status IS NULL', [partnerId, keyHash]);
          throw err;
        }
        await this.catalog.query(
          'UPDATE idempotency_keys SET status = $3, response = $4 WHERE partner_id = $1 AND key_hash = $2',
          [partnerId, keyHash, answer.status, seal(answer, key, keyHash)],
        );
        return { ...answer, replayed: false };
      }
      const { rows } = await this.catalog.query(
        'SELECT request_hash, status, response FROM idempotency_keys WHERE partner_id = $1 AND key_hash = $2',
        [partnerId, keyHash],
      );
      const row = rows[0];
      if (row) {
        if (row.request_hash !== requestHash) {
          throw new ConflictError('Idempotency-Key: already used with a different request; use a new key for a new request');
        }
        if (row.status !== null) return { ...open(row.response, key, keyHash), replayed: true };
      }
      // In progress elsewhere (or just freed by a failure: claim again).
      if (Date.now() > deadline) {
        throw new ConflictError('Idempotency-Key: a request with this key is still in progress; retry later');
      }
      if (row) await sleep(pause);
    }
  }

  /** True when this request now owns the key: new, expired, or abandoned by a gateway that died. */
  private async claim(partnerId: string, keyHash: string, requestHash: string): Promise<boolean> {
    const { rowCount } = await this.catalog.query(
      `INSERT INTO idempotency_keys (partner_id, key_hash, request_hash, expires_at)
       VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
       ON CONFLICT (partner_id, key_hash) DO UPDATE
         SET request_hash = EXCLUDED.request_hash, status = NULL, response = NULL,
             created_at = clock_timestamp(), expires_at = EXCLUDED.expires_at
       WHERE idempotency_keys.expires_at < clock_timestamp()
          OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < clock_timestamp() - make_interval(secs => $5))`,
      [partnerId, keyHash, requestHash, this.opts.ttlSeconds, this.opts.abandonedAfterSeconds],
    );
    return rowCount === 1;
  }

  /** Forgets expired keys; returns how many. */
  async purgeExpired(): Promise<number> {
    const { rowCount } = await this.catalog.query('DELETE FROM idempotency_keys WHERE expires_at < clock_timestamp()');
    return rowCount ?? 0;
  }
}
