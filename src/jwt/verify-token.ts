import { type JWTPayload, decodeJwt, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import type { Catalog } from '../catalog/catalog.ts';
import type { RouteCache } from '../catalog/route-cache.ts';
import { type BranchRoute, routeByDatabase } from '../catalog/routes.ts';
import { TokenError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { GATEWAY_ISSUER, type GatewayTokens } from './gateway-tokens.ts';
import type { PartnerIssuers } from './partner-issuers.ts';
import { CLOCK_TOLERANCE_SECONDS, refusal } from './token-rules.ts';

export interface ConnectionTokenOptions {
  /** The endpoint the client named by TLS SNI (or options), if any: the token must be for it. */
  sniEndpointId?: string;
  /** The role the client asked for (startup `user`), if any: the token must grant it. */
  role?: string;
}

/** What a valid token lets the connection do: which endpoint to reach and as which role. */
export interface ConnectionGrant {
  databaseId: string;
  endpointId: string;
  partnerId: string;
  userId: string;
  role: string;
  via: 'gateway' | 'partner';
  /** The token's `exp`. */
  expiresAt: Date;
  /** The catalog route of the endpoint (what `RouteCache.byEndpoint` returns), to wake and connect. */
  route: BranchRoute;
}

export interface TokenVerifierDeps {
  catalog: Catalog;
  /** Routes by endpoint, from memory. */
  routes: RouteCache;
  tokens: GatewayTokens;
  issuers: PartnerIssuers;
  log: Logger;
}

/** What a verified token names; the database is then found from the most precise of these. */
interface TokenScope {
  via: 'gateway' | 'partner';
  partnerId: string;
  endpointId?: string;
  databaseId?: string;
  userId?: string;
  role?: string;
  expiresAt: Date;
}

/**
 * Verifies a JWT given as a connection's password and decides where it may connect.
 * Throws TokenError (SQLSTATE 28P01): its message is the short reason for the client, its
 * `detail` the full one (logged here). Catalog failures are rethrown as they are.
 */
export async function verifyConnectionToken(deps: TokenVerifierDeps, token: string, opts: ConnectionTokenOptions = {}): Promise<ConnectionGrant> {
  const context: Record<string, unknown> = { sni: opts.sniEndpointId, role: opts.role };
  try {
    const { iss, kid } = peek(token);
    Object.assign(context, { iss, kid });
    const scope = iss === GATEWAY_ISSUER ? await gatewayScope(deps.tokens, token) : await partnerScope(deps.issuers, token, iss);
    context.partner = scope.partnerId;
    const route = await findRoute(deps, scope, opts.sniEndpointId);
    const role = grantedRole(scope, route, opts.role);
    deps.log.debug({ ...context, via: scope.via, database: route.databaseId, granted: role }, 'JWT accepted');
    return {
      databaseId: route.databaseId,
      endpointId: route.endpointId,
      partnerId: route.partnerId,
      userId: route.userId,
      role,
      via: scope.via,
      expiresAt: scope.expiresAt,
      route,
    };
  } catch (err) {
    if (!(err instanceof TokenError || err instanceof errors.JOSEError)) throw err;
    const refused = refusal(err);
    deps.log.info({ ...context, reason: refused.message, detail: refused.logDetail }, 'JWT refused');
    throw refused;
  }
}

/**
 * The unverified `iss` and `kid`, read only to choose the keys to verify with. The
 * token is untrusted until jwtVerify (with an algorithm allowlist) has accepted it.
 */
function peek(token: string): { iss: string; kid: string | undefined } {
  let iss: unknown;
  let kid: unknown;
  try {
    kid = decodeProtectedHeader(token).kid;
    iss = decodeJwt(token).iss;
  } catch (err) {
    throw new TokenError('malformed token', `cannot decode the token: ${(err as Error).message}`);
  }
  if (typeof iss !== 'string' || !iss) throw new TokenError('token has no issuer', 'the token has no "iss" claim');
  return { iss, kid: typeof kid === 'string' ? kid : undefined };
}

async function gatewayScope(tokens: GatewayTokens, token: string): Promise<TokenScope> {
  const claims = await tokens.verify(token);
  return {
    via: 'gateway',
    partnerId: claims.partnerId,
    endpointId: claims.endpointId,
    databaseId: claims.databaseId,
    userId: claims.userId,
    role: claims.role,
    expiresAt: expiryOf(claims.payload),
  };
}

async function partnerScope(issuers: PartnerIssuers, token: string, iss: string): Promise<TokenScope> {
  const configs = await issuers.byIssuer(iss);
  if (configs.length === 0) throw new TokenError('unknown issuer', `no partner has registered the issuer "${iss}"`);
  const audiences = [decodeJwt(token).aud].flat().filter((a): a is string => typeof a === 'string');
  const matching = configs.filter((c) => audiences.includes(c.audience));
  if (matching.length === 0) {
    throw new TokenError('wrong audience', `token audience ${JSON.stringify(audiences)} is none of issuer "${iss}"'s ${JSON.stringify(configs.map((c) => c.audience))}`);
  }
  if (matching.length > 1) {
    throw new TokenError('token names several audiences', `token audiences ${JSON.stringify(audiences)} match ${matching.length} partners of issuer "${iss}"`);
  }
  const config = matching[0]!;
  const { payload } = await jwtVerify(token, issuers.keysOf(config), {
    issuer: config.issuer,
    audience: config.audience,
    algorithms: config.algorithms,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    requiredClaims: ['exp'],
  });
  const claim = (name: string | null): string | undefined => {
    if (name === null || payload[name] === undefined) return undefined;
    const v = payload[name];
    // Some identity providers give numeric user ids; databases.user_id is their decimal text.
    if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
    if (typeof v !== 'string' || !v) throw new TokenError(`token claim "${name}" is not valid`, `claim "${name}" must be a non-empty string`);
    return v;
  };
  const endpointId = claim(config.endpointClaim);
  const databaseId = claim(config.databaseClaim);
  // A database or endpoint claim the partner chose to trust names the database; else the user does.
  const userId = endpointId || databaseId ? undefined : claim(config.userClaim);
  if (!endpointId && !databaseId && !userId) {
    throw new TokenError('token names no database', `the token has none of the claims ${[config.endpointClaim, config.databaseClaim, config.userClaim].filter(Boolean).join(', ')}`);
  }
  return { via: 'partner', partnerId: config.partnerId, endpointId, databaseId, userId, role: claim('role'), expiresAt: expiryOf(payload) };
}

const expiryOf = (payload: JWTPayload) => new Date(payload.exp! * 1000);

function describe(scope: TokenScope): string {
  const parts = [`partner ${scope.partnerId}`];
  if (scope.endpointId) parts.push(`endpoint ${scope.endpointId}`);
  if (scope.databaseId) parts.push(`database ${scope.databaseId}`);
  if (scope.userId) parts.push(`user ${scope.userId}`);
  return parts.join(', ');
}

/** Everything the token names agrees with the route, and the route is of the partner whose keys verified it. */
function agrees(scope: TokenScope, route: BranchRoute): boolean {
  return (
    route.partnerId === scope.partnerId &&
    (scope.endpointId === undefined || route.endpointId === scope.endpointId) &&
    (scope.databaseId === undefined || route.databaseId === scope.databaseId) &&
    (scope.userId === undefined || route.userId === scope.userId)
  );
}

async function findRoute({ catalog, routes }: TokenVerifierDeps, scope: TokenScope, sniEndpointId: string | undefined): Promise<BranchRoute> {
  if (sniEndpointId !== undefined) {
    const route = await routes.byEndpoint(sniEndpointId);
    if (!route || !agrees(scope, route)) {
      throw new TokenError(
        'token is not for this database',
        `token for ${describe(scope)} presented for endpoint ${sniEndpointId}` +
          (route ? ` (database ${route.databaseId} of partner ${route.partnerId}, user ${route.userId})` : ' (no such endpoint)'),
      );
    }
    return route;
  }
  let route: BranchRoute | undefined;
  if (scope.endpointId) route = await routes.byEndpoint(scope.endpointId);
  else if (scope.databaseId) route = await routeByDatabase(catalog, scope.databaseId);
  else {
    const { rows } = await catalog.query<{ id: string }>(
      'SELECT id FROM databases WHERE partner_id = $1 AND user_id = $2 ORDER BY created_at, id LIMIT 2',
      [scope.partnerId, scope.userId],
    );
    if (rows.length === 0) throw new TokenError('no database for this user', `partner ${scope.partnerId} has no database of user ${scope.userId}`);
    if (rows.length > 1) {
      throw new TokenError(
        'this user has several databases: connect with the endpoint host name',
        `user ${scope.userId} of partner ${scope.partnerId} has several databases and the token names none (no database claim, no SNI)`,
      );
    }
    route = await routeByDatabase(catalog, rows[0]!.id);
  }
  // Another partner's database is reported exactly like a missing one.
  if (!route || !agrees(scope, route)) {
    throw new TokenError(
      'database not found',
      route ? `token for ${describe(scope)} names database ${route.databaseId} of partner ${route.partnerId}` : `nothing found for ${describe(scope)}`,
    );
  }
  return route;
}

function grantedRole(scope: TokenScope, route: BranchRoute, requested: string | undefined): string {
  const role = scope.role ?? route.ownerRole;
  if (!route.verifiers.has(role)) {
    throw new TokenError(`role "${role}" does not exist`, `the token grants role "${role}", which database ${route.databaseId} does not have`);
  }
  if (requested !== undefined && requested !== role) {
    throw new TokenError(`the token does not grant role "${requested}"`, `requested role "${requested}", the token grants "${role}" (${scope.via} token)`);
  }
  return role;
}
