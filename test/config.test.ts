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
  t.equal(c.domain, 'localhost');
  t.equal(c.dataDir, path.resolve('./.pgfleet'));
  t.equal(c.adminKey, undefined);
  t.equal(c.compute.sharedBuffers, '16MB');
});

t.test('port 0 means pick a free port', async (t) => {
  t.equal(loadConfig({ PGFLEET_API_PORT: '0' }).apiPort, 0);
});

const bad: [string, string][] = [
  ['PGFLEET_API_PORT', 'eighty'],
  ['PGFLEET_PROXY_PORT', '70000'],
  ['PGFLEET_LOG_LEVEL', 'loud'],
  ['PGFLEET_DOMAIN', 'not a domain'],
  ['DATABASE_URL', 'mysql://x'],
  ['REDIS_URL', '::::'],
  ['PGFLEET_ADMIN_KEY', 'short'],
  ['PGFLEET_COMPUTE_SHARED_BUFFERS', 'lots'],
  ['PGFLEET_ALLOW_PLAINTEXT', 'maybe'],
  ['PGFLEET_MAX_COMPUTES', '0'],
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
