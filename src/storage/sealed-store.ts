import crypto from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { type ObjectStore, StoreIntegrityError } from './object-store.ts';

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

const MAGIC = Buffer.from('PGS1');
const COMPRESSED = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = MAGIC.length + 1 + NONCE_BYTES;

/** Whose key seals an object: one database's, or the fleet's (templates: no tenant data). */
export type SealScope = `db-${string}` | 'fleet';

/**
 * Every object pgfleet writes to the store, compressed (gzip, level 1: the WAL of a switched
 * segment is mostly zeros) and sealed with AES-256-GCM under a key derived from
 * PGFLEET_SECRET_KEY for its database (HKDF), the object's name authenticated with it: a leaked
 * bucket reveals no tenant data, and an object that is torn, altered, moved to another name or
 * sealed with another key fails its check on read instead of being used.
 */
export class SealedStore {
  private readonly keys = new Map<string, Buffer>();

  constructor(readonly store: ObjectStore, private readonly secret: Buffer) {}

  get location(): string {
    return this.store.location;
  }

  private keyOf(scope: SealScope): Buffer {
    let key = this.keys.get(scope);
    if (!key) {
      key = Buffer.from(crypto.hkdfSync('sha256', this.secret, Buffer.alloc(0), `pgfleet storage v1 ${scope}`, 32));
      if (this.keys.size > 10_000) this.keys.clear();
      this.keys.set(scope, key);
    }
    return key;
  }

  /** Seals bytes bound to `name` (an object key, or a chunk's id inside a pack). */
  seal(scope: SealScope, name: string, plaintext: Buffer, flags = 0): Buffer {
    const nonce = crypto.randomBytes(NONCE_BYTES);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.keyOf(scope), nonce);
    const header = Buffer.concat([MAGIC, Buffer.from([flags]), nonce]);
    cipher.setAAD(Buffer.concat([header, Buffer.from(name)]));
    return Buffer.concat([header, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  /** Opens what seal() made for the same scope and name; throws StoreIntegrityError otherwise. */
  open(scope: SealScope, name: string, sealed: Buffer): { plaintext: Buffer; flags: number } {
    if (sealed.length < HEADER_BYTES + TAG_BYTES || !sealed.subarray(0, MAGIC.length).equals(MAGIC)) throw new StoreIntegrityError(name, 'not a sealed object (torn or foreign)');
    const header = sealed.subarray(0, HEADER_BYTES);
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.keyOf(scope), header.subarray(MAGIC.length + 1));
    decipher.setAAD(Buffer.concat([header, Buffer.from(name)]));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      const plaintext = Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
      return { plaintext, flags: header[MAGIC.length]! };
    } catch {
      throw new StoreIntegrityError(name, 'authentication failed (torn, altered, or sealed with another PGFLEET_SECRET_KEY)');
    }
  }

  /** Compresses and seals in the thread pool's time, not the event loop's. */
  async pack(scope: SealScope, name: string, plaintext: Buffer): Promise<Buffer> {
    return this.seal(scope, name, await gzip(plaintext, { level: 1 }), COMPRESSED);
  }

  async unpack(scope: SealScope, name: string, sealed: Buffer): Promise<Buffer> {
    const { plaintext, flags } = this.open(scope, name, sealed);
    return flags & COMPRESSED ? gunzip(plaintext) : plaintext;
  }

  async put(scope: SealScope, key: string, plaintext: Buffer): Promise<void> {
    await this.store.put(key, await this.pack(scope, key, plaintext));
  }

  /** The object's plaintext, checked; undefined when there is none. */
  async get(scope: SealScope, key: string): Promise<Buffer | undefined> {
    const sealed = await this.store.get(key);
    return sealed === undefined ? undefined : this.unpack(scope, key, sealed);
  }
}
