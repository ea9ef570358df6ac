import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { startCore } from '../src/gateway.ts';
import { GatewayTokens } from '../src/jwt/gateway-tokens.ts';
import { looksLikeJwt } from '../src/jwt/looks-like-jwt.ts';
import { SigningKeys } from '../src/jwt/signing-keys.ts';
import { refusal } from '../src/jwt/token-rules.ts';
import { seededDataDir, tmpDataDir } from './helpers.ts';
import { addDatabase, addPartner, forge, jwtCore, nowSeconds, refused } from './jwt-helpers.ts';

t.test('gateway tokens against a real catalog', async (t) => {
  const core = await jwtCore(t);
  await addPartner(core, 'acme');
  await addPartner(core, 'other');
  const dbA = await addDatabase(core, 'acme', 'alice');
  const dbB = await addDatabase(core, 'acme', 'bob');
  const dbOther = await addDatabase(core, 'other', 'alice');
  const verify = core.jwt.verifyConnectionToken;

  /** A token signed with pgfleet's current key, claims chosen by the test. */
  const signed = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) => {
    const { kid, privateKey } = core.jwt.keys.current();
    const now = nowSeconds();
    return new SignJWT({
      iss: 'pgfleet', aud: 'pgfleet', sub: dbA.userId, database_id: dbA.id, endpoint_id: dbA.endpointId, partner_id: 'acme',
      role: dbA.ownerRole, iat: now, exp: now + 300, ...claims,
    }).setProtectedHeader({ alg: 'EdDSA', kid, ...header }).sign(privateKey);
  };

  t.test('issued token verifies and names its database, endpoint and role', async (t) => {
    const issued = await core.jwt.tokens.issueFor(dbA, { ttlSeconds: 600 });
    t.ok(looksLikeJwt(issued.token));
    const claims = decodeJwt(issued.token);
    t.match(claims, { iss: 'pgfleet', aud: 'pgfleet', sub: 'alice', database_id: dbA.id, endpoint_id: dbA.endpointId, partner_id: 'acme', role: 'app_owner' });
    t.equal(claims.exp! - claims.iat!, 600);
    t.equal(decodeProtectedHeader(issued.token).alg, 'EdDSA');
    const grant = await verify(issued.token);
    t.match(grant, { databaseId: dbA.id, endpointId: dbA.endpointId, partnerId: 'acme', userId: 'alice', role: 'app_owner', via: 'gateway' });
    t.equal(grant.route.branchId, dbA.branchId, 'the route to wake');
    t.equal(grant.expiresAt.getTime(), issued.expiresAt.getTime());
    t.match(await verify(issued.token, { sniEndpointId: dbA.endpointId, role: 'app_owner' }), { databaseId: dbA.id }, 'SNI and role that agree');
  });

  t.test('TTL bounds and role are checked at issue, naming the field', async (t) => {
    for (const ttlSeconds of [0, -5, 1.5, 86401]) {
      await t.rejects(core.jwt.tokens.issueFor(dbA, { ttlSeconds }), { message: 'ttl_seconds: must be a whole number from 1 to 86400', httpStatus: 400 }, `ttl ${ttlSeconds}`);
    }
    const one = await core.jwt.tokens.issueFor(dbA, { ttlSeconds: 1 });
    t.equal(one.expiresAt.getTime() - Date.now() <= 1000, true, 'a 1-second token');
    await t.rejects(core.jwt.tokens.issueFor(dbA, { role: 'nobody' }), { message: /^role: the database has no role "nobody"/, httpStatus: 400 });
    const byDefault = decodeJwt((await core.jwt.tokens.issueFor(dbA)).token);
    t.equal(byDefault.exp! - byDefault.iat!, 3600, 'an hour by default');
  });

  t.test('expired and not yet valid, with 30 s of clock skew allowed', async (t) => {
    const now = nowSeconds();
    await refused(t, verify(await signed({ iat: now - 600, exp: now - 120 })), 'token expired');
    await refused(t, verify(await signed({ nbf: now + 120 })), 'token not yet valid');
    t.ok(await verify(await signed({ iat: now - 600, exp: now - 10 })), 'expired 10 s ago: within the skew');
    t.ok(await verify(await signed({ nbf: now + 10 })), 'valid in 10 s: within the skew');
    await refused(t, verify(await signed({ exp: undefined })), /token has no expiry|claim "exp"/, 'no exp');
  });

  t.test('wrong issuer or audience', async (t) => {
    await refused(t, verify(await signed({ aud: 'someone-else' })), 'wrong audience');
    await refused(t, verify(await signed({ iss: 'https://evil.example' })), 'unknown issuer', 'an issuer nobody registered');
  });

  t.test('alg none, HS256 signed with the public key, and a tampered payload are refused', async (t) => {
    const { kid } = core.jwt.keys.current();
    const now = nowSeconds();
    const payload = { iss: 'pgfleet', aud: 'pgfleet', sub: 'alice', database_id: dbA.id, endpoint_id: dbA.endpointId, partner_id: 'acme', role: 'app_owner', iat: now, exp: now + 300 };
    const none = forge({ alg: 'none', typ: 'JWT' }, payload);
    t.ok(looksLikeJwt(none), 'the proxy still routes it here');
    await refused(t, verify(none), 'signing algorithm not allowed', 'alg none');
    const publicJwk = core.jwt.keys.jwks().keys[0]!;
    const pem = crypto.createPublicKey({ key: publicJwk as crypto.JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    for (const secret of [pem, JSON.stringify(publicJwk), Buffer.from(publicJwk.x!, 'base64url')]) {
      await refused(t, verify(forge({ alg: 'HS256', kid, typ: 'JWT' }, payload, secret)), 'signing algorithm not allowed', 'HS256 with the public key');
    }
    const good = await signed({});
    const [h, , s] = good.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(good), role: 'superuser' })).toString('base64url')}.${s}`;
    await refused(t, verify(tampered), 'bad token signature');
    await refused(t, verify(await signed({}, { kid: 'not-a-kid' })), 'unknown signing key');
    await refused(t, verify('abc.def.ghi'), 'malformed token');
  });

  t.test('a token for database A is refused with the SNI of database B', async (t) => {
    const tokenA = (await core.jwt.tokens.issueFor(dbA)).token;
    await refused(t, verify(tokenA, { sniEndpointId: dbB.endpointId }), 'token is not for this database', 'same partner, other database');
    await refused(t, verify(tokenA, { sniEndpointId: dbOther.endpointId }), 'token is not for this database', "another partner's database");
    await refused(t, verify(tokenA, { sniEndpointId: 'ep-no-such-1234' }), 'token is not for this database', 'unknown endpoint');
    await refused(t, verify(await signed({ database_id: dbOther.id, endpoint_id: dbOther.endpointId })), 'database not found', 'claims naming another partner');
  });

  t.test('only the role the token grants, and only roles that exist', async (t) => {
    await core.databases.addRole('acme', dbA.id, 'reader');
    const reader = await core.jwt.tokens.issueFor(await core.databases.get('acme', dbA.id), { role: 'reader' });
    t.equal((await verify(reader.token, { role: 'reader' })).role, 'reader');
    await refused(t, verify(reader.token, { role: 'app_owner' }), 'the token does not grant role "app_owner"');
    await refused(t, verify(await signed({ role: 'ghost' })), 'role "ghost" does not exist');
  });

  t.test('a deleted database refuses its tokens', async (t) => {
    const doomed = await addDatabase(core, 'acme', 'carol');
    const token = (await core.jwt.tokens.issueFor(doomed)).token;
    await core.databases.delete('acme', doomed.id);
    await refused(t, verify(token), 'database not found');
  });
});

t.test('rotation: old tokens verify until expiry, the new key signs; keys survive a restart', async (t) => {
  const config = loadConfig({ PGFLEET_DATA_DIR: seededDataDir(), PGFLEET_LOG_LEVEL: 'warn', PGFLEET_ADMIN_KEY: 'test-admin-key-0123456789' });
  let core = await startCore(config);
  t.teardown(() => core.stop());
  await addPartner(core, 'acme');
  const db = await addDatabase(core, 'acme', 'alice');
  const dir = path.join(config.dataDir, 'jwt');
  t.equal(fs.statSync(dir).mode & 0o777, 0o700);
  for (const f of fs.readdirSync(dir)) t.equal(fs.statSync(path.join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`);

  const oldKid = core.jwt.keys.current().kid;
  const oldToken = (await core.jwt.tokens.issueFor(db)).token;
  const newKid = await core.jwt.keys.rotate();
  t.not(newKid, oldKid);
  const newToken = (await core.jwt.tokens.issueFor(db)).token;
  t.equal(decodeProtectedHeader(newToken).kid, newKid, 'the new key signs');
  t.same(core.jwt.keys.jwks().keys.map((k) => k.kid), [newKid, oldKid], 'both public keys served, current first');
  for (const k of core.jwt.keys.jwks().keys) t.same(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x'], 'public members only');
  t.equal((await core.jwt.verifyConnectionToken(oldToken)).databaseId, db.id, 'the old token still works');
  t.equal((await core.jwt.verifyConnectionToken(newToken)).databaseId, db.id);

  await core.stop();
  core = await startCore(config);
  t.equal(core.jwt.keys.current().kid, newKid, 'the same signing key after a restart');
  t.equal((await core.jwt.verifyConnectionToken(oldToken)).role, 'app_owner', 'old token after a restart');
  t.equal((await core.jwt.verifyConnectionToken(newToken)).role, 'app_owner', 'new token after a restart');
  for (const f of fs.readdirSync(dir)) t.notMatch(fs.readFileSync(path.join(dir, f), 'utf8'), /BEGIN/, 'JWK files');
});

t.test('a retired key is dropped once its longest token has expired', async (t) => {
  const dataDir = tmpDataDir();
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const keys = await SigningKeys.open(dataDir, { retainSeconds: 1 });
  const tokens = new GatewayTokens(keys, 3600);
  const claims = { databaseId: 'db-x', endpointId: 'ep-x', partnerId: 'p', userId: 'u', role: 'r' };
  const old = await tokens.issue(claims, 3600);
  await keys.rotate();
  t.equal((await tokens.verify(old.token)).databaseId, 'db-x', 'within the retention');
  await new Promise((r) => setTimeout(r, 1200));
  t.equal(keys.jwks().keys.length, 1, 'only the current key is served');
  const err = await tokens.verify(old.token).then(() => undefined, refusal);
  t.equal(err?.userReason, 'unknown signing key');
  await keys.rotate();
  t.same(fs.readdirSync(path.join(dataDir, 'jwt')).sort(), ['key-00000002.json', 'key-00000003.json'], "the first key's file is deleted");
  fs.writeFileSync(path.join(dataDir, 'jwt', 'key-00000004.json'), 'garbage', { mode: 0o600 });
  await t.rejects(SigningKeys.open(dataDir, { retainSeconds: 1 }), { message: /key-00000004\.json: cannot read the signing key/ }, 'a damaged key file stops the start, named');
});

t.test('looksLikeJwt', async (t) => {
  const header = Buffer.from('{"alg":"ES256"}').toString('base64url');
  t.ok(looksLikeJwt(`${header}.eyJ9.c2ln`));
  t.notOk(looksLikeJwt('correct horse battery staple'));
  t.notOk(looksLikeJwt('a.b.c'), 'segments that are not a JSON header');
  t.notOk(looksLikeJwt(`${Buffer.from('{"typ":"JWT"}').toString('base64url')}.e30.c2ln`), 'no alg');
  t.notOk(looksLikeJwt(`${header}.e30`), 'two segments');
  t.notOk(looksLikeJwt(`${header}.e30.c2ln.x`), 'four segments');
  t.notOk(looksLikeJwt(`endpoint=ep-a-1;${header}.e30.c2ln`));
});

t.test('config: PGFLEET_TOKEN_MAX_TTL and the JWKS settings', async (t) => {
  const c = loadConfig({});
  t.same(c.jwt, { tokenMaxTtlSeconds: 86400, jwksCacheMaxAgeMs: 600_000, jwksCooldownMs: 30_000, jwksAllowHttp: false, jwksAllowInternal: false });
  t.equal(loadConfig({ PGFLEET_TOKEN_MAX_TTL: '900' }).jwt.tokenMaxTtlSeconds, 900);
  t.throws(() => loadConfig({ PGFLEET_TOKEN_MAX_TTL: '10' }), /PGFLEET_TOKEN_MAX_TTL: must be between 60/);
  t.throws(() => loadConfig({ PGFLEET_JWKS_ALLOW_HTTP: 'maybe' }), /PGFLEET_JWKS_ALLOW_HTTP/);
});
