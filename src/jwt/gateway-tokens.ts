import crypto from 'node:crypto';
import { type JWTPayload, SignJWT, jwtVerify } from 'jose';
import type { DatabaseRecord } from '../database-records.ts';
import { BadRequestError, TokenError } from '../errors.ts';
import type { FleetKeys } from './fleet-keys.ts';
import { SIGNING_ALG, type SigningKeys } from './signing-keys.ts';
import { CLOCK_TOLERANCE_SECONDS } from './token-rules.ts';

/** `iss` and `aud` of the tokens pgfleet issues; no partner may register this issuer. */
export const GATEWAY_ISSUER = 'pgfleet';
export const GATEWAY_AUDIENCE = 'pgfleet';
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;

/** What a gateway token says: one role of one database (endpoint) of one partner's user. */
export interface GatewayTokenClaims {
  databaseId: string;
  endpointId: string;
  partnerId: string;
  userId: string;
  role: string;
}

export interface IssuedToken {
  token: string;
  expiresAt: Date;
  role: string;
}

/**
 * Short-lived JWTs signed with pgfleet's current key (EdDSA):
 * iss/aud `pgfleet`, sub = the user id, database_id, endpoint_id, partner_id, role, jti.
 */
export class GatewayTokens {
  constructor(
    private readonly keys: SigningKeys,
    readonly maxTtlSeconds: number,
    /** In a fleet, the other gateways' public keys: their tokens verify here too. */
    private readonly fleetKeys?: FleetKeys,
  ) {}

  /**
   * A token for a database the caller may see (the API reads it scoped to the partner). The role
   * defaults to the owner role; the TTL to an hour (capped by the maximum).
   */
  async issueFor(database: DatabaseRecord, opts: { role?: string; ttlSeconds?: number } = {}): Promise<IssuedToken> {
    const role = opts.role ?? database.ownerRole;
    if (!database.roles.includes(role)) throw new BadRequestError(`role: the database has no role "${role}"`);
    return this.issue(
      { databaseId: database.id, endpointId: database.endpointId, partnerId: database.partnerId, userId: database.userId, role },
      opts.ttlSeconds ?? Math.min(DEFAULT_TOKEN_TTL_SECONDS, this.maxTtlSeconds),
    );
  }

  async issue(claims: GatewayTokenClaims, ttlSeconds: number): Promise<IssuedToken> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > this.maxTtlSeconds) {
      throw new BadRequestError(`ttl_seconds: must be a whole number from 1 to ${this.maxTtlSeconds}`);
    }
    const { kid, privateKey } = this.keys.current();
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      database_id: claims.databaseId,
      endpoint_id: claims.endpointId,
      partner_id: claims.partnerId,
      role: claims.role,
    })
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'JWT' })
      .setIssuer(GATEWAY_ISSUER)
      .setAudience(GATEWAY_AUDIENCE)
      .setSubject(claims.userId)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .setJti(crypto.randomUUID())
      .sign(privateKey);
    return { token, expiresAt: new Date((now + ttlSeconds) * 1000), role: claims.role };
  }

  /** The claims of a valid gateway token; throws (a jose error or TokenError) otherwise. */
  async verify(token: string): Promise<GatewayTokenClaims & { payload: JWTPayload }> {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const key = this.keys.publicKey(header.kid) ?? (await this.fleetKeys?.publicKey(header.kid));
        if (!key) throw new TokenError('unknown signing key', `no pgfleet signing key with kid "${header.kid ?? ''}" (rotated out, or never ours)`);
        return key;
      },
      {
        issuer: GATEWAY_ISSUER,
        audience: GATEWAY_AUDIENCE,
        algorithms: [SIGNING_ALG],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'sub'],
      },
    );
    const text = (name: string): string => {
      const v = payload[name];
      if (typeof v !== 'string' || !v) throw new TokenError('malformed token', `gateway token without a string "${name}" claim`);
      return v;
    };
    return {
      databaseId: text('database_id'),
      endpointId: text('endpoint_id'),
      partnerId: text('partner_id'),
      userId: text('sub'),
      role: text('role'),
      payload,
    };
  }
}
