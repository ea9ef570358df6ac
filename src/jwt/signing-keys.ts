import fs from 'node:fs';
import path from 'node:path';
import { type CryptoKey, type JWK, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';

/** pgfleet signs its tokens with Ed25519. */
export const SIGNING_ALG = 'EdDSA';

/** What one key file holds (mode 0600): the private key is never logged nor served. */
interface StoredKey {
  seq: number;
  kid: string;
  alg: typeof SIGNING_ALG;
  createdAt: string;
  privateJwk: JWK;
}

interface LoadedKey {
  seq: number;
  kid: string;
  createdAt: number;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

const KEY_FILE = /^key-(\d{8})\.json$/;
const fileName = (seq: number) => `key-${String(seq).padStart(8, '0')}.json`;

/**
 * pgfleet's own signing keys, kept under `<dataDir>/jwt/`. The newest key signs; an older key
 * stops signing when the next one is made and still verifies for `retainSeconds` after that
 * (the longest token lifetime plus clock skew), then it is deleted.
 */
export class SigningKeys {
  private constructor(
    private readonly dir: string,
    private readonly retainMs: number,
    private keys: LoadedKey[],
  ) {}

  /** Loads the kept keys (a first start makes the first one). */
  static async open(dataDir: string, opts: { retainSeconds: number }): Promise<SigningKeys> {
    const dir = path.join(dataDir, 'jwt');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    const keys: LoadedKey[] = [];
    for (const name of fs.readdirSync(dir).filter((f) => KEY_FILE.test(f)).sort()) {
      const file = path.join(dir, name);
      let stored: StoredKey;
      try {
        stored = JSON.parse(fs.readFileSync(file, 'utf8')) as StoredKey;
      } catch (err) {
        throw new Error(`${file}: cannot read the signing key (${(err as Error).message})`);
      }
      keys.push(await load(stored, file));
    }
    const store = new SigningKeys(dir, opts.retainSeconds * 1000, keys);
    if (keys.length === 0) await store.rotate();
    else store.prune();
    return store;
  }

  /** Takes in keys another process of this gateway made in the same directory (the primary of proxy workers rotated). */
  async reload(): Promise<void> {
    const known = new Set(this.keys.map((k) => k.seq));
    for (const name of fs.readdirSync(this.dir).filter((f) => KEY_FILE.test(f)).sort()) {
      const file = path.join(this.dir, name);
      const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as StoredKey;
      if (!known.has(stored.seq)) this.keys = [...this.keys, await load(stored, file)].sort((a, b) => a.seq - b.seq);
    }
  }

  /** The key that signs new tokens. */
  current(): { kid: string; privateKey: CryptoKey } {
    const key = this.keys[this.keys.length - 1]!;
    return { kid: key.kid, privateKey: key.privateKey };
  }

  /** The public key of a kid that may still verify, or undefined. */
  publicKey(kid: string | undefined): CryptoKey | undefined {
    return this.live().find((k) => k.kid === kid)?.publicKey;
  }

  /** The public JWK Set for `/.well-known/jwks.json`: the current key first, then retired ones still valid. */
  jwks(): { keys: JWK[] } {
    return { keys: this.live().reverse().map((k) => ({ ...k.publicJwk })) };
  }

  /** Makes a new current key; tokens signed by the previous ones keep verifying until they expire. Returns its kid. */
  async rotate(): Promise<string> {
    const { privateKey } = await generateKeyPair(SIGNING_ALG, { crv: 'Ed25519', extractable: true });
    const privateJwk = await exportJWK(privateKey);
    const stored: StoredKey = {
      seq: (this.keys[this.keys.length - 1]?.seq ?? 0) + 1,
      kid: await calculateJwkThumbprint(publicPartOf(privateJwk)),
      alg: SIGNING_ALG,
      createdAt: new Date().toISOString(),
      privateJwk,
    };
    const file = path.join(this.dir, fileName(stored.seq));
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(stored), { mode: 0o600 });
    fs.renameSync(tmp, file);
    this.keys = [...this.keys, await load(stored, file)];
    this.prune();
    return stored.kid;
  }

  /** The current key and the retired keys whose tokens may still be valid, oldest first. */
  private live(): LoadedKey[] {
    const now = Date.now();
    return this.keys.filter((_key, i) => {
      const next = this.keys[i + 1];
      return next === undefined || next.createdAt + this.retainMs > now;
    });
  }

  /** Forgets and deletes the keys no valid token can name any more. */
  private prune(): void {
    const live = this.live();
    for (const key of this.keys) {
      if (!live.includes(key)) fs.rmSync(path.join(this.dir, fileName(key.seq)), { force: true });
    }
    this.keys = live;
  }
}

async function load(stored: StoredKey, file: string): Promise<LoadedKey> {
  if (stored.alg !== SIGNING_ALG || typeof stored.privateJwk?.d !== 'string') throw new Error(`${file} is not a pgfleet signing key`);
  const publicJwk: JWK = { ...publicPartOf(stored.privateJwk), kid: stored.kid, alg: SIGNING_ALG, use: 'sig' };
  return {
    seq: stored.seq,
    kid: stored.kid,
    createdAt: Date.parse(stored.createdAt),
    privateKey: (await importJWK(stored.privateJwk, SIGNING_ALG)) as CryptoKey,
    publicKey: (await importJWK(publicJwk, SIGNING_ALG)) as CryptoKey,
    publicJwk,
  };
}

/** The public members of an Ed25519 JWK (never `d`). */
const publicPartOf = (jwk: JWK): JWK => ({ kty: jwk.kty, crv: jwk.crv, x: jwk.x });
