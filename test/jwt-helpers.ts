import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JSONWebKeySet } from 'jose';
import type { Test } from 'tap';
import { TokenError } from '../src/errors.ts';
import { type Core, startCore } from '../src/gateway.ts';
import { testConfig } from './helpers.ts';

/** A core on a fresh data dir, stopped when the test ends. */
export async function jwtCore(t: Test, env: Record<string, string> = {}): Promise<Core> {
  const core = await startCore(testConfig(env));
  t.teardown(() => core.stop());
  return core;
}

export async function addPartner(core: Core, id: string): Promise<void> {
  await core.catalog.query('INSERT INTO partners (id, name) VALUES ($1, $1)', [id]);
}

export async function addDatabase(core: Core, partnerId: string, userId: string) {
  return (await core.databases.create({ partnerId, userId, suspendTimeoutSeconds: 0 })).database;
}

/** A JWKS served by a real HTTP server on 127.0.0.1; `jwks` and `status` may be changed, `requests` counts fetches. */
export async function serveJwks(t: Test, jwks: JSONWebKeySet) {
  const state = { jwks, status: 200, requests: 0 };
  const server = http.createServer((_req, res) => {
    state.requests++;
    res.writeHead(state.status, { 'content-type': 'application/json' }).end(JSON.stringify(state.jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const stop = () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  t.teardown(() => (server.listening ? stop() : undefined));
  return { state, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`, stop };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** A compact JWS put together by hand (for `alg: none` and HS256-with-a-public-key forgeries). */
export function forge(header: Record<string, unknown>, payload: Record<string, unknown>, hmacSecret?: string | Buffer): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const signature = hmacSecret === undefined ? '' : crypto.createHmac('sha256', hmacSecret).update(input).digest('base64url');
  return `${input}.${signature}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Asserts that the promise is refused with this short reason; returns the error for more checks. */
export async function refused(t: Test, p: Promise<unknown>, userReason: string | RegExp, msg?: string): Promise<TokenError> {
  try {
    await p;
  } catch (err) {
    t.type(err, TokenError, msg ?? 'a TokenError');
    const e = err as TokenError;
    t.match(e.userReason, userReason, msg ?? `refused: ${String(userReason)}`);
    t.equal(e.sqlstate, '28P01');
    t.ok(e.logDetail.length > 0, 'a detail for the log');
    return e;
  }
  t.fail(`${msg ?? 'token'} was accepted`);
  throw new Error('accepted');
}
