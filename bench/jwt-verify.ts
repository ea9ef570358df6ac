/**
 * The cost of JWT authentication per connection, beside the catalog route lookup every
 * connection makes anyway (routeByEndpoint), in the same run:
 *   gateway token (EdDSA) · partner token, remote JWKS cached (ES256) · partner token, inline JWKS (RS256)
 *   and issuing a gateway token.
 * Run: node --import ./bin/load-ts.mjs bench/jwt-verify.ts [runs=500]
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { routeByEndpoint } from '../src/catalog/routes.ts';
import { startCore } from '../src/gateway.ts';
import { testConfig } from '../test/helpers.ts';
import { type Row, printLatencyTable, timed } from './stats.ts';

const runs = Number(process.argv[2] ?? 500);
const core = await startCore(testConfig({ PGFLEET_JWKS_ALLOW_HTTP: 'true', PGFLEET_JWKS_ALLOW_INTERNAL: 'true' }));
const server = http.createServer();
try {
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ('acme', 'acme'), ('globex', 'globex')`);
  const { database: db } = await core.databases.create({ partnerId: 'acme', userId: 'alice', suspendTimeoutSeconds: 0 });
  await core.databases.create({ partnerId: 'globex', userId: 'alice', suspendTimeoutSeconds: 0 });

  const es = await generateKeyPair('ES256', { extractable: true });
  const rs = await generateKeyPair('RS256', { extractable: true });
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(es.publicKey)), kid: 'es', alg: 'ES256' }] });
  server.on('request', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  await core.jwt.issuers.set('acme', { issuer: 'https://acme.example', audience: 'pgfleet', jwksUri: url });
  await core.jwt.issuers.set('globex', { issuer: 'https://globex.example', audience: 'pgfleet', jwks: { keys: [{ ...(await exportJWK(rs.publicKey)), kid: 'rs', alg: 'RS256' }] } });
  const partnerToken = (iss: string, alg: string, kid: string, key: CryptoKey) =>
    new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg, kid }).setIssuer(iss).setAudience('pgfleet').setIssuedAt().setExpirationTime('1h').sign(key);

  const gateway = (await core.jwt.tokens.issueFor(db)).token;
  const esToken = await partnerToken('https://acme.example', 'ES256', 'es', es.privateKey);
  const rsToken = await partnerToken('https://globex.example', 'RS256', 'rs', rs.privateKey);
  const verify = core.jwt.verifyConnectionToken;
  const cases: [string, () => Promise<unknown>][] = [
    ['route lookup only (baseline)', () => routeByEndpoint(core.catalog, db.endpointId)],
    ['gateway token, EdDSA', () => verify(gateway)],
    ['gateway token, EdDSA, with SNI', () => verify(gateway, { sniEndpointId: db.endpointId })],
    ['partner token, ES256, remote JWKS (cached)', () => verify(esToken)],
    ['partner token, RS256, inline JWKS', () => verify(rsToken)],
    ['issue a gateway token', () => core.jwt.tokens.issueFor(db)],
  ];
  for (const [, fn] of cases) for (let i = 0; i < 20; i++) await fn(); // warm-up (JIT, pool, JWKS fetch)
  const rows: Row[] = cases.map(([name]) => ({ name, samples: [] }));
  // Interleaved, so that drift in the machine's load hits every case alike.
  for (let i = 0; i < runs; i++) {
    for (const [j, [, fn]] of cases.entries()) rows[j]!.samples.push(await timed(fn));
  }
  printLatencyTable(`JWT connection check, ${runs} runs each`, rows, rows[0]!);
} finally {
  server.close();
  await core.stop();
  fs.rmSync(core.config.dataDir, { recursive: true, force: true });
}
