// Hostile input (issue 16, items 6 to 8): jwks_uri aimed at internal addresses, control
// characters in any text field, and names that are also Object.prototype's keys.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createLogger } from '../../src/log.ts';
import { cachedRemoteJwks } from '../../src/jwt/remote-jwks.ts';
import { startApi } from '../api-client.ts';
import { serveJwks } from '../jwt-helpers.ts';
import { psql, psqlError } from '../proxy-helpers.ts';

const api = await startApi({ PGFLEET_JWKS_ALLOW_HTTP: 'true', PGFLEET_DOMAIN: 'localhost' });
t.teardown(() => api.stop());
const { key } = await api.partner();
const jwks = { keys: [{ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: 'k' }] };

t.test('jwks_uri on loopback, link-local or private addresses is refused, after DNS too', async (t) => {
  for (const uri of ['https://127.0.0.1:19999/jwks', 'https://[::1]/', 'https://169.254.169.254/latest/meta-data', 'http://10.1.2.3/jwks',
    'https://[::ffff:127.0.0.1]/jwks', 'https://localhost/jwks', 'http://192.168.0.1/', 'https://[fd00::1]/']) {
    const res = await api.request('PUT', '/v1/jwt-issuer', { key, body: { issuer: 'https://acme.example', audience: 'pgfleet', jwks_uri: uri } });
    t.equal(res.status, 400, uri);
    t.match(res.body.error.message, /^jwks_uri: must not name a loopback, link-local or private address/);
  }
  const ok = await api.request('PUT', '/v1/jwt-issuer', { key, body: { issuer: 'https://acme.example', audience: 'pgfleet', jwks_uri: 'https://auth.acme.example/jwks' } });
  t.equal(ok.status, 200, 'a public name is accepted (it is checked again on each fetch)');

  // A name that resolves to loopback: the fetch refuses the address it would connect to.
  const server = await serveJwks(t, jwks);
  const log = createLogger('silent');
  const byName = new URL(server.url.replace('127.0.0.1', 'localhost'));
  const guarded = cachedRemoteJwks(byName, { cacheMaxAgeMs: 0, cooldownMs: 0, allowInternalAddresses: false, log });
  await t.rejects(async () => guarded({ alg: 'EdDSA', kid: 'k' }, { payload: '', signature: '' }), /keys are unavailable/);
  t.equal(server.state.requests, 0, 'nothing reached the internal server');
  const allowed = cachedRemoteJwks(byName, { cacheMaxAgeMs: 0, cooldownMs: 0, allowInternalAddresses: true, log });
  t.ok(await allowed({ alg: 'EdDSA', kid: 'k' }, { payload: '', signature: '' }), 'with the operator setting, the same JWKS is fetched');
  t.equal(server.state.requests, 1);

  // A redirect is never followed, even from an allowed server.
  const redirector = http.createServer((_req, res) => res.writeHead(302, { location: server.url }).end());
  await new Promise<void>((r) => redirector.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => redirector.close(() => r())));
  const redirected = cachedRemoteJwks(new URL(`http://127.0.0.1:${(redirector.address() as AddressInfo).port}/jwks`),
    { cacheMaxAgeMs: 0, cooldownMs: 0, allowInternalAddresses: true, log });
  await t.rejects(async () => redirected({ alg: 'EdDSA', kid: 'k' }, { payload: '', signature: '' }), /keys are unavailable/);
  t.equal(server.state.requests, 1, 'the redirect target was not fetched');
});

t.test('control characters in any text field are a 400 naming the field', async (t) => {
  const issuer = { issuer: 'https://acme.example', audience: 'pgfleet', jwks };
  const cases: [string, string, unknown, RegExp][] = [
    ['PUT', '/v1/jwt-issuer', { ...issuer, issuer: 'https://acme\u0000.example' }, /^issuer: must not contain control characters/],
    ['PUT', '/v1/jwt-issuer', { ...issuer, audience: 'pg\u0000fleet' }, /^audience: /],
    ['PUT', '/v1/jwt-issuer', { ...issuer, jwks: { keys: [{ ...jwks.keys[0], kid: 'k\u0000' }] } }, /^jwks\.keys\.0\.kid: /],
    ['PUT', '/v1/jwt-issuer', { ...issuer, jwks: { keys: [{ ...jwks.keys[0], 'x\u0001': 1 }] } }, /^jwks\.keys\.0\.x\u0001: |must not contain control/],
    ['POST', '/v1/databases', { user_id: 'alice\u0007' }, /^user_id: /],
    ['POST', '/v1/databases', { user_id: 'alice', name: 'tab\there' }, /^name: /],
    ['GET', '/v1/databases?user_id=a%00b', undefined, /^user_id: /],
    ['GET', '/v1/databases/db-x%00', undefined, /^id: /],
    ['POST', '/v1/databases/db-x/tokens', { role: 'a\u007f' }, /^role: /],
  ];
  for (const [method, path, body, message] of cases) {
    const res = await api.request(method, path, { key, body });
    t.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
    t.match(res.body.error.message, message);
  }
});

t.test('__proto__ and constructor as role and database names work like any other name', async (t) => {
  const db = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'proto', role_name: '__proto__', database_name: 'constructor' } })).body;
  t.equal(db.role, '__proto__');
  const conninfo = (role: string, password: string) =>
    `host=${db.endpoint_id}.localhost hostaddr=127.0.0.1 port=${api.gateway.proxyPort} user=${role} dbname=constructor password=${password} sslmode=require`;
  t.equal(await psql(conninfo('__proto__', db.password), 'SELECT current_user || \' \' || current_database()'), '__proto__ constructor');
  const role = (await api.request('POST', `/v1/databases/${db.id}/roles`, { key, body: { name: 'constructor' } })).body;
  t.equal(role.role, 'constructor');
  t.equal(await psql(conninfo('constructor', role.password), 'SELECT current_user'), 'constructor');
  const other = (await api.request('POST', '/v1/databases', { key, body: { user_id: 'plain' } })).body;
  const noSuchRole = `host=${other.endpoint_id}.localhost hostaddr=127.0.0.1 port=${api.gateway.proxyPort} user=constructor dbname=app password=x sslmode=require`;
  t.match(await psqlError(noSuchRole), /password authentication failed for user "constructor"/, 'a role the database lacks is an ordinary failure');
  t.match(await psqlError(noSuchRole.replace('user=constructor', 'user=__proto__')), /password authentication failed for user "__proto__"/);
  t.match(await psqlError(noSuchRole.replace('user=constructor', 'user=toString')), /password authentication failed for user "toString"/);
  const token = await api.request('POST', `/v1/databases/${other.id}/tokens`, { key, body: { role: 'toString' } });
  t.equal(token.status, 400, 'a token for an inherited name is refused as an unknown role');
  const camel = await api.request('POST', '/v1/databases', { key, body: { user_id: 'x', role_name: 'toString' } });
  t.equal(camel.status, 400, 'names are lowercase identifiers, so toString itself cannot be created');
});
