import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const SECRET_KEY_BYTES = 32;
const IV_BYTES = 12;
const VERSION = 'v1';

/**
 * AES-256-GCM for the few secrets pgfleet must be able to read back (a Neon role's password).
 * A sealed value is `v1.<key id>.<iv>.<tag>.<ciphertext>` (base64url); `context` (say, the
 * project and role) is authenticated, so a value copied to another record does not open.
 */
export class SecretBox {
  private readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== SECRET_KEY_BYTES) throw new Error(`a secret key is ${SECRET_KEY_BYTES} bytes, got ${key.length}`);
    this.keyId = crypto.createHash('sha256').update(key).digest('base64url').slice(0, 8);
  }

  seal(plaintext: string, context: string): string {
    const iv = crypto.randomBytes(IV_BYTES);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [VERSION, this.keyId, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
  }

  /** The plaintext; throws when the value was altered, sealed for another context, or with another key. */
  open(sealed: string, context: string): string {
    const parts = sealed.split('.');
    if (parts.length !== 5 || parts[0] !== VERSION) throw new Error('not a sealed secret');
    const [, keyId, iv, tag, body] = parts as [string, string, string, string, string];
    if (keyId !== this.keyId) throw new Error('the secret was sealed with another key (was PGFLEET_SECRET_KEY changed?)');
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    try {
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      throw new Error('the sealed secret does not verify: altered, or sealed for another record');
    }
  }
}

/** A 32-byte key written as 64 hex digits or as base64; undefined when it is neither. */
export function parseSecretKey(text: string): Buffer | undefined {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(t) ? Buffer.from(t, 'base64') : undefined;
  return key?.length === SECRET_KEY_BYTES ? key : undefined;
}

/**
 * The configured key, else the one kept (mode 0600) under the data dir, generated at first use.
 * Losing that file loses what it sealed: back it up with the data dir.
 */
export function ensureSecretKey(dataDir: string, configured: Buffer | undefined): Buffer {
  if (configured) return configured;
  const file = path.join(dataDir, 'secret-key');
  try {
    const key = parseSecretKey(fs.readFileSync(file, 'utf8'));
    if (!key) throw new Error(`${file} does not hold a 32-byte key`);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = crypto.randomBytes(SECRET_KEY_BYTES);
  fs.writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}
