/** SCRAM-SHA-256 as a client, for computes reached over TCP (the neon provider). */
import crypto from 'node:crypto';
import { hmac, saltedPassword, sha256 } from '../src/scram-verifier.ts';
import { attributes, nonce, xor } from './scram.ts';

export const SCRAM_CLIENT_GS2 = 'n,,';

export class ScramClient {
  private readonly clientNonce = nonce();
  readonly clientFirst = `${SCRAM_CLIENT_GS2}n=*,r=${this.clientNonce}`;
  private serverSignature: Buffer | undefined;

  constructor(private readonly password: string) {}

  /** The client-final-message for the server-first-message. */
  async respond(serverFirst: string): Promise<string> {
    const attrs = new Map(attributes(serverFirst));
    const combined = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!combined?.startsWith(this.clientNonce) || !salt || !Number.isInteger(iterations) || iterations < 1) {
      throw new Error('the compute sent an invalid SCRAM server-first-message');
    }
    const salted = await saltedPassword(this.password, Buffer.from(salt, 'base64'), iterations);
    const clientKey = hmac(salted, 'Client Key');
    const withoutProof = `c=${Buffer.from(SCRAM_CLIENT_GS2).toString('base64')},r=${combined}`;
    const authMessage = `${this.clientFirst.slice(SCRAM_CLIENT_GS2.length)},${serverFirst},${withoutProof}`;
    this.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${xor(clientKey, hmac(sha256(clientKey), authMessage)).toString('base64')}`;
  }

  /** Checks the server-final-message: the compute proves it knows the verifier too. */
  verify(serverFinal: string): void {
    const v = new Map(attributes(serverFinal)).get('v');
    if (!this.serverSignature || !v || !crypto.timingSafeEqual(Buffer.from(v, 'base64'), this.serverSignature)) {
      throw new Error('the compute failed SCRAM server verification');
    }
  }
}
