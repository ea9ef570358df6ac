/**
 * How a client proves it may use a role. With the endpoint known before auth: SCRAM
 * (with channel binding over TLS). With the endpoint in the password prefix: a cleartext
 * password over TLS, checked against the same verifier. A JWT-as-password method belongs
 * in checkPassword, beside the verifier check.
 */
import crypto from 'node:crypto';
import type { BranchRoute } from '../src/catalog/routes.ts';
import { ExpiringMap } from '../src/limits/expiring-map.ts';
import { AuthFailed } from './errors.ts';
import type { Handshake } from './handshake.ts';
import { MSG } from './protocol/codes.ts';
import { authenticationCleartextPassword, parsePassword } from './protocol/messages.ts';
import { type AuthIO, passwordMatches, scramServer } from './scram.ts';


/** Authentication's messages; a client that takes longer than `timeoutMs` to answer one is closed (a slow peer holds nothing long). */
export function authIO(hs: Handshake, timeoutMs: number): AuthIO {
  return {
    send: (message) => hs.socket.write(message),
    read: async (what) => {
      const timer = setTimeout(() => hs.socket.destroy(), timeoutMs);
      try {
        return await hs.reader.readMessage(MSG.password, what);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Asks for a cleartext password (only ever over TLS). */
export async function readCleartextPassword(io: AuthIO): Promise<string> {
  io.send(authenticationCleartextPassword());
  return parsePassword(await io.read('PasswordMessage'));
}

/**
 * Passwords that matched a verifier lately, so that a client sending its password in clear on
 * every request (SQL over HTTP, a new WebSocket per function call) does not pay PBKDF2 each time.
 * Only successes are kept, as a keyed hash of (verifier, password) under a key that lives in this
 * process only; a new password (a new verifier) misses the cache.
 */
class VerifiedPasswords {
  private readonly key = crypto.randomBytes(32);
  private readonly seen: ExpiringMap<string, true>;

  constructor(max: number, private readonly ttlMs: number) {
    this.seen = new ExpiringMap(max);
  }

  private id(verifier: string, password: string): string {
    return crypto.createHmac('sha256', this.key).update(verifier).update('\0').update(password).digest('base64');
  }

  has(verifier: string, password: string): boolean {
    return this.seen.get(this.id(verifier, password)) === true;
  }

  add(verifier: string, password: string): void {
    this.seen.set(this.id(verifier, password), true, this.ttlMs);
  }
}

const verified = new VerifiedPasswords(10_000, 10 * 60_000);

/** Checks a cleartext password for `role` of the routed branch; throws AuthFailed. */
export async function checkPassword(route: BranchRoute, role: string, password: string): Promise<void> {
  const verifier = route.verifiers.get(role);
  if (verifier !== undefined && verified.has(verifier, password)) return;
  if (!(await passwordMatches(verifier, password))) throw new AuthFailed(role, verifier === undefined ? 'unknown_role' : 'wrong_password');
  verified.add(verifier!, password);
}

/** The SCRAM exchange for `role` of the routed branch, up to its final message (returned, unsent); throws AuthFailed. */
export function scramAuth(io: AuthIO, route: BranchRoute, role: string, channelBinding: Buffer | undefined): Promise<Buffer> {
  return scramServer(io, role, route.verifiers.get(role), channelBinding);
}
