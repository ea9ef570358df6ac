/**
 * Login: which endpoint a connection names (SNI, options, a WebSocket's host, the password's
 * prefix, a JWT's claims) and proof that the client may use the role on it (SCRAM, a cleartext
 * password over TLS, a JWT), under the failure limits of proxy/auth-limiter.ts.
 */
import { decodeJwt } from 'jose';
import type { BranchRoute } from '../src/catalog/routes.ts';
import { TokenError } from '../src/errors.ts';
import { looksLikeJwt } from '../src/jwt/looks-like-jwt.ts';
import { checkPassword, readCleartextPassword, scramAuth } from './auth.ts';
import type { ConnectionContext } from './context.ts';
import {
  HOW_TO_NAME_AN_ENDPOINT, endpointFromHost, endpointFromPassword, endpointFromSni, endpointFromStartup, pgfleetOptions, poolerEndpoint,
} from './endpoint.ts';
import { AuthFailed, ConnectionRefused } from './errors.ts';
import type { Handshake } from './handshake.ts';
import type { AuthIO } from './scram.ts';

/** Who logged in, and to what. */
export interface Login {
  route: BranchRoute;
  /** The endpoint named is a `-pooler` one. */
  pooled: boolean;
  /** SCRAM's last message, sent with AuthenticationOk. */
  saslFinal?: Buffer;
}

/**
 * Finds the endpoint and authenticates the role on it. A named endpoint (SNI or options) means
 * SCRAM, unless options say `auth=jwt`: SCRAM keeps channel binding, and cannot carry a token.
 * Otherwise, over TLS, a cleartext password is asked for (see authenticateWithPassword). A
 * WebSocket always gets the cleartext request: the serverless driver sends its password before
 * being asked, and the WebSocket's own TLS protects it.
 */
export async function identifyAndAuthenticate(
  hs: Handshake, io: AuthIO, role: string, client: string, line: Record<string, unknown>, ctx: ConnectionContext,
): Promise<Login> {
  const options = pgfleetOptions(hs.startup.params.get('options'));
  const named = hs.websocket
    ? endpointFromHost(hs.websocket.host, ctx.core.config.domain)
    : endpointFromSni(hs.tls?.servername, ctx.core.config.domain);
  const namedEndpoint = endpointFromStartup(named, options.endpoint);
  line.endpoint = namedEndpoint;
  const { endpoint, pooled } = poolerEndpoint(namedEndpoint);
  if (endpoint && !options.jwt && !hs.websocket) {
    const route = await routeFor(endpoint, client, ctx);
    // SCRAM never shows the proxy the password: a JWT sent this way fails as a wrong password, with no
    // hint about tokens, since the proxy cannot tell it from the most common mistake (a wrong password).
    const saslFinal = await limited(ctx, endpoint, client, () => scramAuth(io, route, role, hs.tls ? ctx.channelBinding : undefined));
    return { route, pooled, saslFinal };
  }
  if (!hs.tls && !hs.websocket) {
    throw options.jwt
      ? new ConnectionRefused('a JWT is only accepted over TLS', '28000')
      : new ConnectionRefused('the connection names no endpoint', '08004', HOW_TO_NAME_AN_ENDPOINT);
  }
  return passwordAuth(await readCleartextPassword(io), { endpoint, role, client, jwtRequired: options.jwt }, line, ctx, pooled);
}

/** Who is asking, for a password given in clear. */
export interface PasswordClaim {
  /** Named by the host or options; the password may name it instead (prefix, or a JWT). */
  endpoint: string | undefined;
  role: string;
  /** The client's address, for the failure limits. */
  client: string;
  /** `auth=jwt`: only a JWT will do. */
  jwtRequired?: boolean;
}

/**
 * A password given in clear, told apart by its form: a JWT (which names its database itself),
 * `endpoint=<id>;<JWT>`, `endpoint=<id>;<password>`, or the role's password for the endpoint
 * already named. Failures count against the limits; the route is returned.
 */
export async function authenticateWithPassword(password: string, claim: PasswordClaim, line: Record<string, unknown>, ctx: ConnectionContext): Promise<BranchRoute> {
  return (await passwordAuth(password, claim, line, ctx, false)).route;
}

/** authenticateWithPassword, telling whether the endpoint named (here, or by a password prefix) is a `-pooler` one. */
async function passwordAuth(
  password: string, claim: PasswordClaim, line: Record<string, unknown>, ctx: ConnectionContext, namedPooled: boolean,
): Promise<{ route: BranchRoute; pooled: boolean }> {
  const { role, client } = claim;
  if (looksLikeJwt(password)) return { route: await jwtAuth(password, claim.endpoint, role, client, line, ctx), pooled: namedPooled };
  if (claim.jwtRequired) throw new TokenError('the password is not a JWT', 'auth=jwt was given but the password does not look like a JWT');
  const prefixed = endpointFromPassword(password);
  const prefix = poolerEndpoint(prefixed?.endpoint);
  const endpoint = endpointFromStartup(claim.endpoint, prefix.endpoint);
  const pooled = namedPooled || prefix.pooled;
  if (!endpoint) throw new ConnectionRefused('the connection names no endpoint', '08004', HOW_TO_NAME_AN_ENDPOINT);
  const secret = prefixed ? prefixed.password : password;
  if (prefixed && looksLikeJwt(secret)) return { route: await jwtAuth(secret, endpoint, role, client, line, ctx), pooled };
  line.endpoint = prefixed?.endpoint ?? line.endpoint ?? endpoint;
  const route = await routeFor(endpoint, client, ctx);
  await limited(ctx, endpoint, client, () => checkPassword(route, role, secret));
  return { route, pooled };
}

/** A JWT as the password: the token names the database; with SNI too, they must agree. */
async function jwtAuth(
  token: string, sniEndpoint: string | undefined, role: string, client: string, line: Record<string, unknown>, ctx: ConnectionContext,
): Promise<BranchRoute> {
  // Failures count against the client address, and slow down the endpoint named, else the issuer the token claims:
  // nothing an attacker shares with every other client.
  await ctx.limiter.check(client);
  const target = sniEndpoint ?? `iss:${claimedIssuer(token)}`;
  const grant = await limited(ctx, target, client, () => ctx.core.jwt.verifyConnectionToken(token, { sniEndpointId: sniEndpoint, role }));
  line.endpoint = grant.endpointId;
  line.auth = `jwt:${grant.via}`;
  return grant.route;
}

/** The unverified `iss` of a token, only to pick the limiter's key. */
function claimedIssuer(token: string): string {
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? iss.slice(0, 256) : '(none)';
  } catch {
    return '(malformed)';
  }
}

async function routeFor(endpoint: string, client: string, ctx: ConnectionContext): Promise<BranchRoute> {
  await ctx.limiter.check(client);
  const route = await ctx.core.routes.byEndpoint(endpoint);
  if (!route) {
    await ctx.limiter.failed(endpoint, client);
    throw new ConnectionRefused(`endpoint "${endpoint}" does not exist`, '3D000');
  }
  return route;
}

/** Runs an auth method, counting a wrong password or token (not a client that gave up) against the limits. */
async function limited<T>(ctx: ConnectionContext, target: string, client: string, auth: () => Promise<T>): Promise<T> {
  try {
    return await auth();
  } catch (err) {
    if (err instanceof AuthFailed || err instanceof TokenError) await ctx.limiter.failed(target, client);
    throw err;
  }
}

