/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): `webhook-signature` is
 * `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">` under the endpoint's
 * secret `whsec_<base64>`. The `standardwebhooks` package is the specification's own reference
 * implementation, so what pgfleet sends verifies with the libraries receivers use.
 */
import crypto from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { BadRequestError } from '../errors.ts';

const SECRET = /^whsec_([A-Za-z0-9+/]+={0,2})$/;
const SECRET_BYTES = 32;

/** A new secret: 32 random bytes. */
export const generateSecret = (): string => `whsec_${crypto.randomBytes(SECRET_BYTES).toString('base64')}`;

/** A secret a partner chose: `whsec_` and base64 of 24 to 64 bytes (400 naming `secret` otherwise). */
export function checkSecret(secret: string): string {
  const m = SECRET.exec(secret);
  const bytes = m ? Buffer.from(m[1]!, 'base64').length : 0;
  if (!m || bytes < 24 || bytes > 64) throw new BadRequestError('secret: must be whsec_ followed by base64 of 24 to 64 random bytes (leave it out to get one)');
  return secret;
}

/** The three headers of one attempt. */
export function signedHeaders(secret: string, id: string, at: Date, body: string): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(id, at, body),
  };
}
