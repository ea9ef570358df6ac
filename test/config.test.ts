import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { nodeTs } from './helpers.ts';

t.test('defaults run on a laptop', async (t) => {
  const c = loadConfig({});
  t.equal(c.apiPort, 8080);
  t.equal(c.proxyPort, 5432);
  t.equal(c.domain, 'db.localhost');
  t.equal(c.dataDir, path.resolve('./.pgfleet'));
  t.equal(c.adminKey, undefined);
  t.equal(c.compute.sharedBuffers, '16MB');
});

t.test('port 0 means pick a free port', async (t) => {
  t.equal(loadConfig({ PGFLEET_API_PORT: '0' }).apiPort, 0);
});

t.test('the serverless door: off unless PGFLEET_HTTP_PORT is set; on the proxy host unless told', async (t) => {
  t.equal(loadConfig({}).httpPort, undefined);
  const c = loadConfig({ PGFLEET_HTTP_PORT: '4444', PGFLEET_PROXY_HOST: '0.0.0.0' });
  t.same([c.httpPort, c.httpHost], [4444, '0.0.0.0']);
  t.equal(loadConfig({ PGFLEET_HTTP_PORT: '0', PGFLEET_HTTP_HOST: '::1' }).httpHost, '::1');
});

const bad: [string, string][] = [
  ['PGFLEET_API_PORT', 'eighty'],
  ['PGFLEET_PROXY_PORT', '70000'],
  ['PGFLEET_HTTP_PORT', 'https'],
  ['PGFLEET_LOG_LEVEL', 'loud'],
  ['PGFLEET_LOG_FORMAT', 'xml'],
  ['PGFLEET_DOMAIN', 'not a domain'],
  ['DATABASE_URL', 'mysql://x'],
  ['REDIS_URL', '::::'],
  ['PGFLEET_ADMIN_KEY', 'short'],
  ['PGFLEET_COMPUTE_SHARED_BUFFERS', 'lots'],
  ['PGFLEET_ALLOW_PLAINTEXT', 'maybe'],
  ['PGFLEET_MAX_COMPUTES', '0'],
  ['PGFLEET_REGIONS', '{not json'],
  ['PGFLEET_REGIONS', '{"eu-1":{"provider":"aws"}}'],
  ['PGFLEET_REGIONS', '{"eu-1":{"provider":"local","region_id":"x"}}'],
  ['PGFLEET_REGIONS', '{"Bad Id":{"provider":"local"}}'],
  ['PGFLEET_REGIONS', '{"local":{"provider":"local","pg_version":"17"}}'],
  ['PGFLEET_REGIONS', '{"us":{"provider":"neon","pg_version":13}}'],
  ['PGFLEET_PG_VERSION', 'seventeen'],
  ['PGFLEET_SECRET_KEY', 'abc'],
  ['PGFLEET_NEON_CA_FILE', '/nonexistent/ca.pem'],
  ['PGFLEET_NEON_PORT', '0'],
  ['PGFLEET_TRUSTED_PROXIES', '10.0.0.0/33'],
  ['PGFLEET_TRUSTED_PROXIES', 'haproxy.internal'],
  ['PGFLEET_SQL_MAX_STATEMENTS', '0'],
  ['PGFLEET_SQL_TIMEOUT', 'soon'],
  ['PGFLEET_DATABASE_MAX_CLIENT_CONNECTIONS', '0'],
  ['PGFLEET_MAX_CLIENT_CONNECTIONS_PER_ADDRESS', '-1'],
];
for (const [name, value] of bad) {
  t.test(`${name}=${value} is refused by name`, async (t) => {
    let caught: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof ConfigError, 'a ConfigError');
    t.equal((caught as ConfigError).variable, name);
    t.match((caught as ConfigError).message, new RegExp(`^${name}: `));
  });
}

t.test('regions: local by default; neon regions with their API key and host', async (t) => {
  t.same(loadConfig({}).regions, [{ id: 'local', provider: 'local', pgVersion: undefined }]);
  const c = loadConfig({
    PGFLEET_REGIONS: '{"aws-us-east-2":{"provider":"neon","region_id":"aws-us-east-2","api_key_env":"NEON_API_KEY"}}',
    NEON_API_KEY: 'napi_x',
  });
  t.same(c.regions.map((r) => r.id), ['local', 'aws-us-east-2'], 'local first, so still the default');
  t.match(c.regions[1], { provider: 'neon', pgVersion: undefined, neon: { regionId: 'aws-us-east-2', apiKey: 'napi_x', apiHost: 'https://console.neon.tech/api/v2' } });
  const only = loadConfig({ PGFLEET_REGIONS: '{"local":null,"eu":{"provider":"neon","region_id":"aws-eu-central-1","api_key_env":"EU_KEY","api_host":"http://127.0.0.1:9/api/v2/"}}', EU_KEY: 'k' });
  t.same(only.regions.map((r) => r.id), ['eu'], 'local: null removes the local region');
  t.match(only.regions[0], { neon: { apiHost: 'http://127.0.0.1:9/api/v2', apiKey: 'k' } });
  t.equal(loadConfig({}).neon.port, 5432);
});

t.test('Postgres majors: PGFLEET_PG_VERSION, and a region\'s own pg_version (local and neon)', async (t) => {
  t.equal(loadConfig({}).pgVersion, undefined, 'unset: the binaries decide (PGFLEET_PG_BIN\'s first, else the embedded default)');
  const c = loadConfig({
    PGFLEET_PG_VERSION: '16', NEON_API_KEY: 'k',
    PGFLEET_REGIONS: '{"local":{"provider":"local","pg_version":18},"us":{"provider":"neon","pg_version":15},"eu":{"provider":"neon"}}',
  });
  t.equal(c.pgVersion, 16);
  t.same(c.regions.map((r) => [r.id, r.pgVersion]), [['local', 18], ['us', 15], ['eu', undefined]]);
  t.throws(() => loadConfig({ PGFLEET_REGIONS: '{"us":{"provider":"neon","pg_version":19}}', NEON_API_KEY: 'k' }), { message: /us\.pg_version must be a major Neon runs: 14, 15, 16, 17, 18/ });
});

t.test('a neon region without its API key names the missing variable', async (t) => {
  t.throws(() => loadConfig({ PGFLEET_REGIONS: '{"us":{"provider":"neon","region_id":"aws-us-east-2"}}' }), { variable: 'NEON_API_KEY', message: /needed by the neon region "us"/ });
  t.throws(() => loadConfig({ PGFLEET_REGIONS: '{"us":{"provider":"neon"}}', NEON_API_KEY: 'k', NEON_API_HOST: 'ftp://x' }), { variable: 'NEON_API_HOST', message: /^NEON_API_HOST: must use https/ });
});

t.test('a bad variable stops the process with a non-zero exit and its name', async (t) => {
  const [cmd, args] = nodeTs('main.ts');
  const r = spawnSync(cmd, args, {
    env: { ...process.env, PGFLEET_API_PORT: 'not-a-port' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.not(r.status, 0);
  t.match(r.stderr, /PGFLEET_API_PORT/);
});

t.test('PGFLEET_TRUSTED_PROXIES: addresses and CIDRs of either family; IPv4-mapped peers match IPv4 entries', async (t) => {
  const trusted = loadConfig({ PGFLEET_TRUSTED_PROXIES: '10.1.2.3, 192.168.0.0/16,fd00::/8' }).trustedProxies;
  t.ok(trusted.has('10.1.2.3'));
  t.ok(trusted.has('::ffff:192.168.7.9'), 'a mapped IPv4 address');
  t.ok(trusted.has('fd12::1'));
  t.notOk(trusted.has('10.1.2.4'));
  t.notOk(loadConfig({}).trustedProxies.has('127.0.0.1'), 'none by default');
});
