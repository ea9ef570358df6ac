import crypto from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2 = promisify(crypto.pbkdf2);

/** Postgres's default; a verifier made here is one Postgres itself would accept. */
export const SCRAM_ITERATIONS = 4096;

/** A parsed `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` verifier. */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export const hmac = (key: Buffer, data: string | Buffer) => crypto.createHmac('sha256', key).update(data).digest();
export const sha256 = (data: Buffer) => crypto.createHash('sha256').update(data).digest();

/**
 * The salted password of RFC 5802. Passwords are taken as UTF-8 bytes without SASLprep,
 * which is what libpq does for the ASCII passwords pgfleet generates.
 */
export function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return pbkdf2(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
}

export async function makeScramVerifier(password: string, iterations = SCRAM_ITERATIONS): Promise<string> {
  const salt = crypto.randomBytes(16);
  const salted = await saltedPassword(password, salt, iterations);
  const storedKey = sha256(hmac(salted, 'Client Key'));
  const serverKey = hmac(salted, 'Server Key');
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

export function parseScramVerifier(text: string): ScramVerifier | undefined {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(text);
  if (!m) return undefined;
  return {
    iterations: Number(m[1]),
    salt: Buffer.from(m[2]!, 'base64'),
    storedKey: Buffer.from(m[3]!, 'base64'),
    serverKey: Buffer.from(m[4]!, 'base64'),
  };
}

/** Whether a cleartext password is the one a verifier was made from. */
export async function matchesVerifier(verifier: ScramVerifier, password: string): Promise<boolean> {
  const salted = await saltedPassword(password, verifier.salt, verifier.iterations);
  return crypto.timingSafeEqual(sha256(hmac(salted, 'Client Key')), verifier.storedKey);
}

/** A password for a generated role: 32 characters, safe in a URI without escaping. */
export function generatePassword(): string {
  return crypto.randomBytes(24).toString('base64url');
}
