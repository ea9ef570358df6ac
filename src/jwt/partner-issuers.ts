import { type JSONWebKeySet, type JWK, type JWTVerifyGetKey, createLocalJWKSet, importJWK } from 'jose';
import type { Catalog } from '../catalog/catalog.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { GATEWAY_ISSUER } from './gateway-tokens.ts';
import { checkOutboundUrl } from '../outbound-address.ts';
import { cachedRemoteJwks } from './remote-jwks.ts';
import { DEFAULT_PARTNER_ALGORITHMS, PARTNER_ALGORITHMS } from './token-rules.ts';

/** A partner's JWT settings as given (by the API); field errors name the API's snake_case fields. */
export interface PartnerIssuerInput {
  issuer: string;
  audience: string;
  /** Exactly one of jwksUri and jwks. */
  jwksUri?: string | null;
  jwks?: JSONWebKeySet | null;
  /** The claim that holds the partner's user id (databases.user_id); default `sub`. */
  userClaim?: string;
  /** A claim that names the database id directly; unset = not used. */
  databaseClaim?: string | null;
  /** A claim that names the endpoint id directly; unset = not used. */
  endpointClaim?: string | null;
  /** Allowed signing algorithms (asymmetric only); default RS256, ES256, EdDSA. */
  algorithms?: string[];
}

export interface PartnerIssuer {
  partnerId: string;
  issuer: string;
  audience: string;
  jwksUri: string | null;
  jwks: JSONWebKeySet | null;
  userClaim: string;
  databaseClaim: string | null;
  endpointClaim: string | null;
  algorithms: string[];
  updatedAt: Date;
}

export interface PartnerIssuersOptions {
  jwksCacheMaxAgeMs: number;
  jwksCooldownMs: number;
  jwksAllowHttp: boolean;
  /** Let jwks_uri name loopback, link-local or private addresses. */
  jwksAllowInternal: boolean;
  log: Logger;
}

const MAX_TEXT = 512;
const MAX_URI = 2048;
const MAX_KEYS = 100;
const MAX_JWKS_BYTES = 64 * 1024;
const CLAIM_NAME = /^[\x21-\x7e]{1,256}$/;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const GUESSED_ALG: Record<string, string> = { RSA: 'RS256', 'EC/P-256': 'ES256', 'EC/P-384': 'ES384', 'EC/P-521': 'ES512', 'OKP/Ed25519': 'EdDSA' };

function toIssuer(row: any): PartnerIssuer {
  return {
    partnerId: row.partner_id,
    issuer: row.issuer,
    audience: row.audience,
    jwksUri: row.jwks_uri,
    jwks: row.jwks,
    userClaim: row.user_claim,
    databaseClaim: row.database_claim,
    endpointClaim: row.endpoint_claim,
    algorithms: row.algorithms,
    updatedAt: row.updated_at,
  };
}

/**
 * Partners' own JWT issuers: one per partner, in the catalog; and the key set each verifies with
 * (inline, or remote and cached). A config change (updated_at) builds a fresh key set.
 */
export class PartnerIssuers {
  private readonly keySets = new Map<string, { stamp: string; getKey: JWTVerifyGetKey }>();

  constructor(
    private readonly catalog: Catalog,
    private readonly opts: PartnerIssuersOptions,
  ) {}

  /** Creates or replaces the partner's JWT config, validated; errors name the field. */
  async set(partnerId: string, input: PartnerIssuerInput): Promise<PartnerIssuer> {
    const v = await this.validate(input);
    try {
      const { rows } = await this.catalog.query(
        `INSERT INTO partner_jwt_issuers (partner_id, issuer, audience, jwks_uri, jwks, user_claim, database_claim, endpoint_claim, algorithms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (partner_id) DO UPDATE SET issuer = $2, audience = $3, jwks_uri = $4, jwks = $5, user_claim = $6,
           database_claim = $7, endpoint_claim = $8, algorithms = $9, updated_at = clock_timestamp()
         RETURNING *`,
        [partnerId, v.issuer, v.audience, v.jwksUri, v.jwks, v.userClaim, v.databaseClaim, v.endpointClaim, v.algorithms],
      );
      return toIssuer(rows[0]);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '23505') throw new ConflictError('issuer: another partner already uses this issuer with this audience');
      if (code === '23503') throw new NotFoundError(`partner "${partnerId}" not found`);
      throw err;
    }
  }

  async get(partnerId: string): Promise<PartnerIssuer> {
    const { rows } = await this.catalog.query('SELECT * FROM partner_jwt_issuers WHERE partner_id = $1', [partnerId]);
    if (!rows[0]) throw new NotFoundError('this partner has no JWT issuer configured');
    return toIssuer(rows[0]);
  }

  async delete(partnerId: string): Promise<void> {
    const { rowCount } = await this.catalog.query('DELETE FROM partner_jwt_issuers WHERE partner_id = $1', [partnerId]);
    if (!rowCount) throw new NotFoundError('this partner has no JWT issuer configured');
    this.keySets.delete(partnerId);
  }

  /** The configs that name this issuer (one per audience). */
  async byIssuer(issuer: string): Promise<PartnerIssuer[]> {
    const { rows } = await this.catalog.query('SELECT * FROM partner_jwt_issuers WHERE issuer = $1', [issuer]);
    return rows.map(toIssuer);
  }

  /** The key set that verifies this config's tokens. */
  keysOf(config: PartnerIssuer): JWTVerifyGetKey {
    const stamp = `${config.updatedAt.toISOString()} ${config.jwksUri ?? ''}`;
    const cached = this.keySets.get(config.partnerId);
    if (cached?.stamp === stamp) return cached.getKey;
    const getKey = config.jwksUri
      ? cachedRemoteJwks(new URL(config.jwksUri), {
          cacheMaxAgeMs: this.opts.jwksCacheMaxAgeMs,
          cooldownMs: this.opts.jwksCooldownMs,
          allowInternalAddresses: this.opts.jwksAllowInternal,
          log: this.opts.log.child({ partner: config.partnerId }),
        })
      : createLocalJWKSet(config.jwks!);
    this.keySets.set(config.partnerId, { stamp, getKey });
    return getKey;
  }

  private async validate(input: PartnerIssuerInput) {
    const issuer = text('issuer', input.issuer);
    if (issuer === GATEWAY_ISSUER) throw new BadRequestError(`issuer: "${GATEWAY_ISSUER}" is pgfleet's own issuer`);
    const hasUri = input.jwksUri !== undefined && input.jwksUri !== null;
    const hasJwks = input.jwks !== undefined && input.jwks !== null;
    if (hasUri === hasJwks) throw new BadRequestError('jwks_uri: give either jwks_uri or an inline jwks, not both and not neither');
    return {
      issuer,
      audience: text('audience', input.audience),
      jwksUri: hasUri ? this.jwksUri(input.jwksUri) : null,
      jwks: hasJwks ? await publicJwks(input.jwks) : null,
      userClaim: claimName('user_claim', input.userClaim ?? 'sub'),
      databaseClaim: input.databaseClaim == null ? null : claimName('database_claim', input.databaseClaim),
      endpointClaim: input.endpointClaim == null ? null : claimName('endpoint_claim', input.endpointClaim),
      algorithms: algorithms(input.algorithms ?? DEFAULT_PARTNER_ALGORITHMS),
    };
  }

  private jwksUri(value: unknown): string {
    return checkOutboundUrl('jwks_uri', text('jwks_uri', value, MAX_URI), { allowHttp: this.opts.jwksAllowHttp, allowInternal: this.opts.jwksAllowInternal });
  }
}

function text(field: string, value: unknown, max = MAX_TEXT): string {
  if (typeof value !== 'string' || value.trim() === '' || value !== value.trim()) {
    throw new BadRequestError(`${field}: must be a non-empty string without surrounding spaces`);
  }
  if (value.length > max) throw new BadRequestError(`${field}: at most ${max} characters`);
  return value;
}

function claimName(field: string, value: unknown): string {
  if (typeof value !== 'string' || !CLAIM_NAME.test(value)) {
    throw new BadRequestError(`${field}: must be a claim name of 1 to 256 printable characters without spaces`);
  }
  return value;
}

function algorithms(value: unknown): string[] {
  const known: readonly string[] = PARTNER_ALGORITHMS;
  if (!Array.isArray(value) || value.length === 0) throw new BadRequestError(`algorithms: must be a non-empty list of ${known.join(', ')}`);
  for (const alg of value) {
    if (typeof alg !== 'string' || !known.includes(alg)) {
      throw new BadRequestError(`algorithms: "${String(alg)}" is not allowed; choose from ${known.join(', ')}`);
    }
  }
  return [...new Set(value as string[])];
}

/** An inline JWKS of public signing keys only, each importable. */
async function publicJwks(value: unknown): Promise<JSONWebKeySet> {
  const keys = (value as { keys?: unknown })?.keys;
  if (typeof value !== 'object' || !Array.isArray(keys) || keys.length === 0 || keys.length > MAX_KEYS) {
    throw new BadRequestError(`jwks: must be a JWK Set ({"keys": [...]}) of 1 to ${MAX_KEYS} keys`);
  }
  if (JSON.stringify(value).length > MAX_JWKS_BYTES) throw new BadRequestError(`jwks: at most ${MAX_JWKS_BYTES} bytes`);
  for (const [i, key] of (keys as unknown[]).entries()) {
    if (typeof key !== 'object' || key === null || Array.isArray(key)) throw new BadRequestError(`jwks: keys[${i}] is not a JWK`);
    const jwk = key as JWK;
    if (jwk.kty === 'oct') throw new BadRequestError(`jwks: keys[${i}] is a symmetric key; only public keys are accepted`);
    if (PRIVATE_MEMBERS.some((m) => m in jwk)) throw new BadRequestError(`jwks: keys[${i}] holds private key material; give only public keys`);
    const alg = jwk.alg ?? GUESSED_ALG[jwk.kty === 'RSA' ? 'RSA' : `${jwk.kty}/${jwk.crv}`];
    try {
      if (!alg) throw new Error(`unsupported key type ${jwk.kty}`);
      await importJWK(jwk, alg);
    } catch (err) {
      throw new BadRequestError(`jwks: keys[${i}] is not a usable public key (${(err as Error).message})`);
    }
  }
  return { keys: keys as JWK[] };
}
