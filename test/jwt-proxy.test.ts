// JWTs as passwords, end to end: tokens from the API (and a partner's own issuer), psql and node-postgres through the proxy.
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import pg from 'pg';
import t from 'tap';
import { ADMIN_KEY, startApi } from './api-client.ts';
import { serveJwks } from './jwt-helpers.ts';
import { psql, psqlError } from './proxy-helpers.ts';

t.test('gateway and partner tokens connect psql and node-postgres; every refusal is 28P01 with a reason', async (t) => {
  const api = await startApi({ PGFLEET_JWKS_ALLOW_HTTP: 'true', PGFLEET_JWKS_ALLOW_INTERNAL: 'true' });
  t.teardown(() => api.stop());
  const port = api.gateway.proxyPort;
  const acme = await api.partner('acme');
  const other = await api.partner('other');
  const create = async (key: string, user: string) => (await api.request('POST', '/v1/databases', { key, body: { user_id: user } })).body;
  const a = await create(acme.key, 'alice');
  const b = await create(acme.key, 'bob');
  const token = async (db: any, body: object = {}) => api.request('POST', `/v1/databases/${db.id}/tokens`, { key: acme.key, body });
  // No endpoint in the connection string: the token alone names the database.
  const conninfo = (role: string, password: string, extra = '') =>
    `host=127.0.0.1 port=${port} user=${role} dbname=app sslmode=require password=${password} ${extra}`;

  const issued = await token(a, { ttl_seconds: 600 });
  t.equal(issued.status, 201);
  t.equal(issued.body.role, a.role);
  t.equal(await psql(conninfo(a.role, issued.body.token), 'SELECT current_user'), a.role, 'psql with a gateway token');
  const client = new pg.Client({ host: '127.0.0.1', port, user: a.role, database: 'app', password: issued.body.token, ssl: { rejectUnauthorized: false } });
  await client.connect();
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'node-postgres with a gateway token');
  await client.end();

  t.equal((await token(a, { ttl_seconds: 0 })).status, 400, 'a TTL below 1 s is refused');
  t.equal((await token(a, { ttl_seconds: 10 ** 7 })).status, 400, 'a TTL over the maximum is refused');
  t.equal((await api.request('POST', `/v1/databases/${a.id}/tokens`, { key: other.key, body: {} })).status, 404, "another partner's database");

  // With SNI too, both must name the same database.
  const sniOfB = `host=${b.host} hostaddr=127.0.0.1 port=${port} user=${a.role} dbname=app sslmode=require password=${issued.body.token} options=auth=jwt`;
  const mismatch = await psqlError(sniOfB);
  t.match(mismatch, /FATAL: +token is not for this database/, 'a token for A with the SNI of B is refused');
  t.notMatch(mismatch, /DETAIL/, 'the full reason stays in the log');
  t.match(await psql(sniOfB.replace(b.endpoint_id, a.endpoint_id), 'SELECT 1'), '1', 'the SNI of A itself is fine');

  // A role the token does not grant.
  await api.request('POST', `/v1/databases/${a.id}/roles`, { key: acme.key, body: { name: 'reader' } });
  const notGranted = await psqlError(conninfo('reader', issued.body.token));
  t.match(notGranted, /the token does not grant role "reader"/, 'the token grants its role only');

  // Rotation: the old token keeps working until it expires; the new key signs.
  t.equal((await api.request('POST', '/v1/keys/rotate', { key: acme.key })).status, 403, 'partners cannot rotate');
  const rotated = await api.request('POST', '/v1/keys/rotate', { key: ADMIN_KEY });
  t.equal(rotated.status, 200);
  const jwks = await (await fetch(`${api.url}/.well-known/jwks.json`)).json();
  t.equal(jwks.keys[0].kid, rotated.body.kid, 'the new key is served first');
  t.equal(jwks.keys.length, 2, 'the old key is still served');
  t.equal(await psql(conninfo(a.role, issued.body.token), 'SELECT 1'), '1', 'an old token still connects');
  t.equal(await psql(conninfo(a.role, (await token(a)).body.token), 'SELECT 1'), '1', 'a token of the new key connects');

  // A partner's own issuer, its JWKS served by a real HTTP server.
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'acme-1', alg: 'ES256', use: 'sig' };
  const served = await serveJwks(t, { keys: [jwk] });
  const registered = await api.request('PUT', '/v1/jwt-issuer', {
    key: acme.key, body: { issuer: 'https://auth.acme.test', audience: 'acme-db', jwks_uri: served.url },
  });
  t.equal(registered.status, 200);
  t.equal((await api.request('GET', '/v1/jwt-issuer', { key: acme.key })).body.jwks_uri, served.url);
  const partnerToken = (claims: Record<string, unknown>, exp: string | number = '5m') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'acme-1' }).setIssuer('https://auth.acme.test')
      .setAudience('acme-db').setSubject('alice').setIssuedAt().setExpirationTime(exp).sign(privateKey);
  t.equal(await psql(conninfo(a.role, await partnerToken({})), 'SELECT current_user'), a.role, "psql with the partner's token for alice");
  const expired = await psqlError(conninfo(a.role, await partnerToken({}, Math.floor(Date.now() / 1000) - 3600)));
  t.match(expired, /28P01|token expired/);
  t.match(expired, /expired/, 'the reason says expired');
  const wrongAudience = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'acme-1' }).setIssuer('https://auth.acme.test')
    .setAudience('someone-else').setSubject('alice').setExpirationTime('5m').sign(privateKey);
  t.match(await psqlError(conninfo(a.role, wrongAudience)), /audience|issuer/, 'a wrong audience is named');

  // The partner's JWKS server goes down: known keys keep working.
  await served.stop();
  t.equal(await psql(conninfo(a.role, await partnerToken({})), 'SELECT 1'), '1', 'cached keys keep working');

  const metrics = await (await fetch(`${api.url}/metrics`)).text();
  t.match(metrics, /pgfleet_proxy_auth_failures_total\{reason="token"\} [1-9]/, 'token failures are counted');
});
