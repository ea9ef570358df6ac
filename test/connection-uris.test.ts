// The URI a new user is handed on a default install (domain db.localhost, the generated CA),
// pasted as it is into psql, psycopg2, node-postgres, postgres.js and pgJDBC; and its verify-full forms.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import t from 'tap';
import { startApi } from './api-client.ts';
import { execFileAsync, psql } from './proxy-helpers.ts';

const api = await startApi();
t.teardown(() => api.stop());
const partner = await api.partner('uri-co');
const db = (await api.request('POST', '/v1/databases', { key: partner.key, body: { user_id: 'newcomer' } })).body;
const caPath = api.gateway.caPath!;
const ca = fs.readFileSync(caPath, 'utf8');
const verifyFull = (uri: string) => uri.replace('sslmode=require', 'sslmode=verify-full');
const JDBC_JAR = '/usr/share/java/postgresql.jar';

const psycopg2 = async (dsn: string) => (await execFileAsync('/usr/bin/python3', ['-c',
  'import sys, psycopg2\nc = psycopg2.connect(sys.argv[1])\ncur = c.cursor()\ncur.execute("SELECT current_user")\nprint(cur.fetchone()[0])',
  dsn])).stdout.trim();
const jdbc = async (url: string) => (await execFileAsync('java', ['-cp', JDBC_JAR, path.join(import.meta.dirname, 'fixtures/JdbcProbe.java'), url])).stdout.trim();
async function nodePostgres(config: pg.ClientConfig): Promise<string> {
  const c = new pg.Client(config);
  await c.connect();
  try {
    return (await c.query('SELECT current_user AS u')).rows[0].u;
  } finally {
    await c.end();
  }
}
async function postgresJs(uri: string, options: postgres.Options<{}> = {}): Promise<string> {
  const sql = postgres(uri, { max: 1, onnotice: () => {}, ...options });
  try {
    return (await sql`SELECT current_user AS u`)[0]!.u;
  } finally {
    await sql.end();
  }
}

t.test('the default install hands out a URI every client connects with, as pasted', async (t) => {
  t.equal(api.gateway.core.config.domain, 'db.localhost', 'the default domain has two labels');
  t.match(db.connection_uri, new RegExp(`^postgresql://app_owner:[^@]+@localhost:${api.gateway.proxyPort}/app\\?sslmode=require&sslrootcert=/.+/tls/ca\\.crt&options=endpoint%3D${db.endpoint_id}$`));
  t.equal(db.connection_uri_sni, `postgresql://app_owner:${db.password}@${db.endpoint_id}.db.localhost:${api.gateway.proxyPort}/app?sslmode=require&sslrootcert=${caPath}`);
  t.equal(await psql(db.connection_uri, 'SELECT current_user'), 'app_owner', 'psql');
  t.equal(await psycopg2(db.connection_uri), 'app_owner', 'psycopg2');
  t.equal(await nodePostgres({ connectionString: db.connection_uri }), 'app_owner', 'node-postgres (it verifies with sslmode=require: the CA and the name localhost)');
  t.equal(await postgresJs(db.connection_uri), 'app_owner', 'postgres.js (its sslrootcert= reaches the proxy as a startup parameter and stops there)');
  t.equal(await jdbc(db.jdbc_url), 'app_owner', 'pgJDBC with jdbc_url');
  t.equal(db.libpq_connection_uri, db.connection_uri, 'with the generated CA, libpq clients take connection_uri itself');
  t.equal(db.connection_uri, db.connection_uri_no_sni, 'under db.localhost connection_uri is the no-SNI form (as its description says)');
  t.equal(await psql(db.pooled_libpq_connection_uri, 'SELECT current_user'), 'app_owner', 'psql with pooled_libpq_connection_uri');
  t.equal(await jdbc(db.pooled_jdbc_url), 'app_owner', 'pgJDBC with pooled_jdbc_url');
});

t.test('the CA is served to anyone, and every answer links it', async (t) => {
  t.equal(db.ca_certificate_url, `${api.url}/v1/tls/ca.crt`, 'ca_certificate_url: this API, as it was called');
  const served = await fetch(db.ca_certificate_url);
  t.equal(served.status, 200, 'no key needed');
  t.equal(served.headers.get('content-type'), 'application/x-pem-file');
  t.equal(await served.text(), ca, 'the CA that issued the proxy\'s certificate');
  const got = await api.request('GET', `/v1/databases/${db.id}`, { key: partner.key });
  t.equal(got.body.ca_certificate_url, db.ca_certificate_url, 'a database\'s answer links it');
  const role = await api.request('POST', `/v1/databases/${db.id}/roles`, { key: partner.key, body: { name: 'reader' } });
  t.equal(role.body.ca_certificate_url, db.ca_certificate_url, 'so does a new role\'s');
  t.equal(await psql(role.body.libpq_connection_uri, 'SELECT current_user'), 'reader', 'whose strings connect');
});

t.test('verify-full: the same URIs with sslmode=verify-full verify in every client', async (t) => {
  const uri = verifyFull(db.connection_uri);
  t.equal(await psql(uri, 'SELECT 1'), '1', 'psql');
  t.equal(await psycopg2(uri), 'app_owner', 'psycopg2');
  t.equal(await nodePostgres({ connectionString: uri }), 'app_owner', 'node-postgres');
  t.equal(await jdbc(verifyFull(db.jdbc_url)), 'app_owner', 'pgJDBC');
  // postgres.js reads no sslrootcert: Node's own CA list is where the local CA goes.
  const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e',
    "import postgres from 'postgres'; const sql = postgres(process.argv[1], { max: 1 }); " +
    'const [{ u }] = await sql`SELECT current_user AS u`; console.log(u); await sql.end();', uri],
  { cwd: path.dirname(import.meta.dirname), env: { ...process.env, NODE_EXTRA_CA_CERTS: caPath } });
  t.equal(stdout.trim(), 'app_owner', 'postgres.js with NODE_EXTRA_CA_CERTS');
  await t.rejects(postgresJs(uri), { code: 'SELF_SIGNED_CERT_IN_CHAIN' }, 'postgres.js without it refuses the unknown CA (verification is real)');
});

t.test('the SNI form verifies in Node too: the wildcard *.db.localhost spans two labels', async (t) => {
  const servername = `${db.endpoint_id}.db.localhost`;
  const port = api.gateway.proxyPort;
  t.equal(await nodePostgres({ host: '127.0.0.1', port, user: 'app_owner', password: db.password, database: 'app', ssl: { servername, ca } }),
    'app_owner', 'node-postgres with the default host name check');
  t.equal(await postgresJs(`postgresql://app_owner:${encodeURIComponent(db.password)}@127.0.0.1:${port}/app`, { ssl: { servername, ca } }),
    'app_owner', 'postgres.js');
  t.equal(await psql(`host=${servername} hostaddr=127.0.0.1 port=${port} user=app_owner password=${db.password} dbname=app sslmode=verify-full sslrootcert=${caPath}`, 'SELECT 1'),
    '1', 'psql (host for SNI and the check, hostaddr where the name does not resolve)');
  await t.rejects(nodePostgres({ host: '127.0.0.1', port, user: 'app_owner', password: db.password, database: 'app', ssl: { servername: 'ep-x.example.com', ca } }),
    { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }, 'a name the certificate does not hold is refused');
});
