import crypto from 'node:crypto';
import { type CryptoKey, type JWK, SignJWT, exportJWK, generateKeyPair } from 'jose';
import t from 'tap';
import { PartnerIssuers } from '../src/jwt/partner-issuers.ts';
import { cachedRemoteJwks } from '../src/jwt/remote-jwks.ts';
import { createLogger } from '../src/log.ts';
import { addDatabase, addPartner, forge, jwtCore, nowSeconds, refused, serveJwks } from './jwt-helpers.ts';

interface PartnerKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function partnerKey(kid: string, alg = 'ES256'): Promise<PartnerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function sign(key: PartnerKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const now = nowSeconds();
  return new SignJWT({ iat: now, exp: now + 300, ...claims }).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

const ISS_A = 'https://auth.acme.example';
const ISS_B = 'https://login.globex.example';

t.test('partner-issued tokens against a real catalog and a real JWKS server', async (t) => {
  // Every verification asks the JWKS server again (no cache age, no cooldown), so "server down" is exercised.
  const core = await jwtCore(t, { PGFLEET_JWKS_ALLOW_HTTP: 'true', PGFLEET_JWKS_ALLOW_INTERNAL: 'true', PGFLEET_JWKS_CACHE_MAX_AGE: '0', PGFLEET_JWKS_COOLDOWN: '0' });
  await addPartner(core, 'acme');
  await addPartner(core, 'globex');
  const aliceDb = await addDatabase(core, 'acme', 'alice');
  const bobDb1 = await addDatabase(core, 'acme', 'bob');
  const bobDb2 = await addDatabase(core, 'acme', 'bob');
  const globexDb = await addDatabase(core, 'globex', 'mallory');
  await addDatabase(core, 'globex', 'alice');

  const keyA = await partnerKey('acme-1');
  const keyA2 = await partnerKey('acme-2', 'RS256');
  const keyB = await partnerKey('globex-1', 'EdDSA');
  const jwksA = await serveJwks(t, { keys: [keyA.publicJwk] });
  const configA = await core.jwt.issuers.set('acme', { issuer: ISS_A, audience: 'pgfleet-acme', jwksUri: jwksA.url });
  t.match(configA, { partnerId: 'acme', userClaim: 'sub', databaseClaim: null, endpointClaim: null, algorithms: ['RS256', 'ES256', 'EdDSA'] }, 'defaults');
  await core.jwt.issuers.set('globex', { issuer: ISS_B, audience: 'pgfleet', jwks: { keys: [keyB.publicJwk] }, databaseClaim: 'database_id' });
  const verify = core.jwt.verifyConnectionToken;
  const tokenA = (claims: Record<string, unknown> = {}, key = keyA, header = {}) =>
    sign(key, { iss: ISS_A, aud: 'pgfleet-acme', sub: 'alice', ...claims }, header);

  t.test("a token with the user's id finds that user's database, as the owner role", async (t) => {
    const grant = await verify(await tokenA());
    t.match(grant, { databaseId: aliceDb.id, endpointId: aliceDb.endpointId, partnerId: 'acme', userId: 'alice', role: 'app_owner', via: 'partner' });
    t.match(await verify(await tokenA(), { sniEndpointId: aliceDb.endpointId, role: 'app_owner' }), { databaseId: aliceDb.id });
    t.ok(jwksA.state.requests >= 1, 'keys came from the JWKS server');
  });

  t.test('inline JWKS and a database claim (Ed25519)', async (t) => {
    const token = await sign(keyB, { iss: ISS_B, aud: 'pgfleet', sub: 'whoever', database_id: globexDb.id });
    t.match(await verify(token), { databaseId: globexDb.id, partnerId: 'globex', via: 'partner' });
  });

  t.test('expired, not yet valid, wrong issuer, wrong audience', async (t) => {
    const now = nowSeconds();
    await refused(t, verify(await tokenA({ iat: now - 900, exp: now - 120 })), 'token expired');
    await refused(t, verify(await tokenA({ nbf: now + 120 })), 'token not yet valid');
    await refused(t, verify(await tokenA({ exp: undefined })), 'token has no expiry');
    await refused(t, verify(await tokenA({ iss: 'https://auth.acme.example.evil' })), 'unknown issuer');
    await refused(t, verify(await tokenA({ aud: 'pgfleet-globex' })), 'wrong audience');
    await refused(t, verify(await tokenA({ aud: undefined })), 'wrong audience', 'no audience');
  });

  t.test("a token signed by another partner's key never verifies", async (t) => {
    await refused(t, verify(await tokenA({}, keyB)), 'unknown signing key', "globex's key, its own kid");
    await refused(t, verify(await tokenA({}, { ...keyB, kid: keyA.kid }, { alg: 'EdDSA' })), /unknown signing key|bad token signature/, "globex's key under acme's kid");
    const crafted = await partnerKey(keyA.kid);
    await refused(t, verify(await tokenA({}, crafted)), 'bad token signature', 'a fresh key claiming the kid');
  });

  t.test("one partner's token never reaches another partner's database", async (t) => {
    const viaClaim = await sign(keyB, { iss: ISS_B, aud: 'pgfleet', database_id: aliceDb.id });
    await refused(t, verify(viaClaim), 'database not found', "globex token naming acme's database");
    await refused(t, verify(await tokenA({ sub: 'mallory' })), 'no database for this user', 'a user only globex has');
    await refused(t, verify(await tokenA(), { sniEndpointId: globexDb.endpointId }), 'token is not for this database', "acme token, globex's SNI");
    await refused(t, verify(await tokenA(), { sniEndpointId: bobDb1.endpointId }), 'token is not for this database', "alice's token, bob's SNI");
    t.equal((await verify(await tokenA({ database_id: bobDb1.id }))).databaseId, aliceDb.id, 'a database claim acme did not configure is not trusted');
  });

  t.test('a numeric user id names the same user as its decimal text', async (t) => {
    const numeric = await addDatabase(core, 'acme', '4711');
    t.equal((await verify(await tokenA({ sub: 4711 }))).databaseId, numeric.id);
    await refused(t, verify(await tokenA({ sub: { id: 'alice' } })), 'token claim "sub" is not valid');
  });

  t.test('a user with several databases needs SNI (or a database claim)', async (t) => {
    await refused(t, verify(await tokenA({ sub: 'bob' })), /several databases/);
    t.equal((await verify(await tokenA({ sub: 'bob' }), { sniEndpointId: bobDb2.endpointId })).databaseId, bobDb2.id);
  });

  t.test('roles: the token may name one that exists; the client gets no other', async (t) => {
    await core.databases.addRole('acme', aliceDb.id, 'reader');
    t.equal((await verify(await tokenA({ role: 'reader' }), { role: 'reader' })).role, 'reader');
    await refused(t, verify(await tokenA({ role: 'reader' }), { role: 'app_owner' }), 'the token does not grant role "app_owner"');
    await refused(t, verify(await tokenA(), { role: 'reader' }), 'the token does not grant role "reader"', 'no role claim = the owner only');
    await refused(t, verify(await tokenA({ role: 'postgres' })), 'role "postgres" does not exist');
  });

  t.test('alg none and HS256 signed with the public key are refused', async (t) => {
    const now = nowSeconds();
    const payload = { iss: ISS_A, aud: 'pgfleet-acme', sub: 'alice', iat: now, exp: now + 300 };
    await refused(t, verify(forge({ alg: 'none' }, payload)), 'signing algorithm not allowed');
    const pem = crypto.createPublicKey({ key: keyA.publicJwk as crypto.JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    for (const secret of [pem, JSON.stringify(keyA.publicJwk)]) {
      await refused(t, verify(forge({ alg: 'HS256', kid: keyA.kid }, payload, secret)), 'signing algorithm not allowed');
    }
    await refused(t, verify(await tokenA({}, keyA2)), /unknown signing key/, 'RS256 key not in the JWKS yet');
  });

  t.test("the partner's own rotation: a new kid is fetched", async (t) => {
    jwksA.state.jwks = { keys: [keyA.publicJwk, keyA2.publicJwk] };
    t.equal((await verify(await tokenA({}, keyA2))).databaseId, aliceDb.id, 'RS256 key now served');
  });

  t.test('JWKS server down: cached keys keep verifying, an unknown kid is refused', async (t) => {
    const before = jwksA.state.requests;
    t.ok(await verify(await tokenA()), 'fetched while up');
    t.ok(jwksA.state.requests > before, 'the server was asked');
    await jwksA.stop();
    t.equal((await verify(await tokenA())).databaseId, aliceDb.id, 'known kid, server down');
    t.equal((await verify(await tokenA({}, keyA2))).databaseId, aliceDb.id, 'the other known kid, server down');
    await refused(t, verify(await tokenA({}, await partnerKey('acme-3'))), 'unknown signing key', 'unknown kid, server down');
  });

  t.test('a partner whose JWKS was never fetched cannot verify while its server is down', async (t) => {
    await addPartner(core, 'initech');
    const down = await serveJwks(t, { keys: [] });
    await down.stop();
    await core.jwt.issuers.set('initech', { issuer: 'https://initech.example', audience: 'pgfleet', jwksUri: down.url });
    const key = await partnerKey('i-1');
    await refused(t, verify(await sign(key, { iss: 'https://initech.example', aud: 'pgfleet', sub: 'x' })), "the token issuer's keys are unavailable");
  });
});

t.test('partner JWT config: validation, storage, conflicts', async (t) => {
  const core = await jwtCore(t);
  await addPartner(core, 'acme');
  await addPartner(core, 'globex');
  const key = await partnerKey('k1');
  const base = { issuer: 'https://auth.acme.example', audience: 'pgfleet', jwksUri: 'https://auth.acme.example/.well-known/jwks.json' };
  const issuers = core.jwt.issuers;
  const bad = async (input: object, field: string, why: RegExp) => {
    await t.rejects(issuers.set('acme', { ...base, ...input }), { httpStatus: 400, message: new RegExp(`^${field}: ${why.source}`) }, `${field}: ${why.source}`);
  };
  await bad({ jwks: { keys: [key.publicJwk] } }, 'jwks_uri', /give either jwks_uri or an inline jwks/);
  await bad({ jwksUri: null }, 'jwks_uri', /give either/);
  await bad({ jwksUri: 'http://auth.acme.example/jwks' }, 'jwks_uri', /must be an https: URL/);
  await bad({ jwksUri: 'https://user:pw@auth.acme.example/jwks' }, 'jwks_uri', /must not carry credentials/);
  await bad({ jwksUri: 'not a url' }, 'jwks_uri', /not a valid URL/);
  await bad({ issuer: 'pgfleet' }, 'issuer', /"pgfleet" is pgfleet's own issuer/);
  await bad({ issuer: '' }, 'issuer', /must be a non-empty string/);
  await bad({ audience: 42 }, 'audience', /must be a non-empty string/);
  await bad({ algorithms: ['HS256'] }, 'algorithms', /"HS256" is not allowed/);
  await bad({ algorithms: ['none'] }, 'algorithms', /"none" is not allowed/);
  await bad({ algorithms: [] }, 'algorithms', /must be a non-empty list/);
  await bad({ userClaim: 'user id' }, 'user_claim', /must be a claim name/);
  await bad({ databaseClaim: '' }, 'database_claim', /must be a claim name/);
  const inline = { jwksUri: undefined };
  const { d: _d, ...rest } = (await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey)) as JWK & { d: string };
  await bad({ ...inline, jwks: { keys: [{ ...rest, d: _d }] } }, 'jwks', /keys\[0\] holds private key material/);
  await bad({ ...inline, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }, 'jwks', /keys\[0\] is a symmetric key/);
  await bad({ ...inline, jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'nope', y: 'nope' }] } }, 'jwks', /keys\[0\] is not a usable public key/);
  await bad({ ...inline, jwks: { keys: [] } }, 'jwks', /must be a JWK Set/);

  const saved = await issuers.set('acme', { ...base, userClaim: 'https://acme.example/user_id', endpointClaim: 'ep', algorithms: ['ES256', 'ES256'] });
  t.match(saved, { issuer: base.issuer, audience: 'pgfleet', jwksUri: base.jwksUri, jwks: null, userClaim: 'https://acme.example/user_id', endpointClaim: 'ep', algorithms: ['ES256'] });
  t.same(await issuers.get('acme'), saved);
  const replaced = await issuers.set('acme', { issuer: base.issuer, audience: 'pgfleet', jwks: { keys: [key.publicJwk] } });
  t.match(replaced, { jwksUri: null, jwks: { keys: [{ kid: 'k1' }] }, userClaim: 'sub', endpointClaim: null });
  t.ok(replaced.updatedAt > saved.updatedAt, 'a replace is a new version');
  await t.rejects(issuers.set('globex', { issuer: base.issuer, audience: 'pgfleet', jwks: { keys: [key.publicJwk] } }), { httpStatus: 409, message: /^issuer:/ }, 'same issuer and audience');
  t.ok(await issuers.set('globex', { issuer: base.issuer, audience: 'pgfleet-globex', jwks: { keys: [key.publicJwk] } }), 'same issuer, another audience');
  await t.rejects(issuers.set('nobody', { ...base, audience: 'nobody' }), { httpStatus: 404, message: 'partner "nobody" not found' });
  await issuers.delete('acme');
  await t.rejects(issuers.get('acme'), { httpStatus: 404, message: /no JWT issuer/ });
  await t.rejects(issuers.delete('acme'), { httpStatus: 404, message: /no JWT issuer/ });
  t.ok(await new PartnerIssuers(core.catalog, { jwksCacheMaxAgeMs: 0, jwksCooldownMs: 0, jwksAllowHttp: true, jwksAllowInternal: true, log: core.log }).set('acme', { ...base, jwksUri: 'http://127.0.0.1:1/jwks' }), 'http allowed when configured');
});

t.test('remote JWKS: cached for its max age; after a failed fetch, no refetch within the cooldown', async (t) => {
  const key = await partnerKey('r1');
  const server = await serveJwks(t, { keys: [key.publicJwk] });
  const log = createLogger('silent');
  const header = { alg: 'ES256', kid: 'r1' };
  const cached = cachedRemoteJwks(new URL(server.url), { cacheMaxAgeMs: 600_000, cooldownMs: 600_000, allowInternalAddresses: true, log });
  await cached(header, { payload: '', signature: '' });
  await cached(header, { payload: '', signature: '' });
  t.equal(server.state.requests, 1, 'one fetch serves later verifications');
  await t.rejects(async () => cached({ alg: 'ES256', kid: 'other' }, { payload: '', signature: '' }), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  t.equal(server.state.requests, 1, 'an unknown kid within the cooldown does not refetch');

  const eager = cachedRemoteJwks(new URL(server.url), { cacheMaxAgeMs: 0, cooldownMs: 600_000, allowInternalAddresses: true, log });
  await eager(header, { payload: '', signature: '' });
  const fetched = server.state.requests;
  server.state.status = 503;
  t.ok(await eager(header, { payload: '', signature: '' }), 'served from the last fetch when the server fails');
  t.equal(server.state.requests, fetched + 1, 'the server was asked once');
  t.ok(await eager(header, { payload: '', signature: '' }), 'and again');
  t.equal(server.state.requests, fetched + 1, 'not asked again within the cooldown');
});
