// Logs that say why, read from a real `pgfleet start`: each refused connection with a reason an
// operator can act on (the client hears less), a backend error with Postgres's message, every wake
// and suspend with its duration and cause, and a clean stop at INFO with its last line.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ADMIN_KEY } from './api-client.ts';
import { SPAWNED_GATEWAY_ENV, repoRoot, seededDataDir, until } from './helpers.ts';
import { psql, psqlError } from './proxy-helpers.ts';

const dataDir = seededDataDir();
const lines: any[] = [];
const child: ChildProcess = spawn(process.execPath, [path.join(repoRoot, 'bin', 'pgfleet.js'), 'start'], {
  env: { ...process.env, ...SPAWNED_GATEWAY_ENV, PGFLEET_DATA_DIR: dataDir, PGFLEET_API_PORT: '0', PGFLEET_PROXY_PORT: '0', PGFLEET_LOG_FORMAT: 'json', PGFLEET_LOG_LEVEL: 'info', PGFLEET_ADMIN_KEY: ADMIN_KEY },
  stdio: ['ignore', 'pipe', 'ignore'],
});
let buf = '';
child.stdout!.on('data', (d) => {
  buf += d;
  const parts = buf.split('\n');
  buf = parts.pop()!;
  for (const l of parts) if (l.startsWith('{')) lines.push(JSON.parse(l));
});
t.teardown(async () => {
  if (child.exitCode === null) child.kill('SIGKILL');
  fs.rmSync(dataDir, { recursive: true, force: true });
});
await until('pgfleet is ready', () => lines.some((l) => l.msg === 'pgfleet is ready'), 120_000);
const apiUrl: string = lines.find((l) => l.msg === 'pgfleet is ready').api;
const call = async (method: string, p: string, key: string, body?: unknown) => {
  const res = await fetch(`${apiUrl}${p}`, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  return res.status === 204 ? undefined : res.json() as Promise<any>;
};
const partner = await call('POST', '/v1/partners', ADMIN_KEY, { name: 'acme' });
const db = await call('POST', '/v1/databases', partner.api_key, { user_id: 'alice' });
const other = await call('POST', '/v1/databases', partner.api_key, { user_id: 'bob' });
const refusal = async (code: string) => {
  await until(`a ${code} line`, () => lines.some((l) => l.msg === 'connection' && l.refusal === code));
  return lines.filter((l) => l.msg === 'connection' && l.refusal === code).at(-1);
};

t.test('refused connections: the client hears the same words as Postgres, the log says why', async (t) => {
  const uri = db.connection_uri_no_sni as string;
  const wrong = await psqlError(uri.replace(`:${encodeURIComponent(db.password)}@`, ':not-the-password@'));
  const unknown = await psqlError(uri.replace('app_owner:', 'nobody:'));
  t.match(wrong, /password authentication failed for user "app_owner"/);
  t.match(unknown, /password authentication failed for user "nobody"/, 'an unknown role reads like a wrong password to the client');
  t.match((await refusal('wrong_password')).reason, /wrong password for role "app_owner" on endpoint ep-.*reset_password/);
  t.match((await refusal('unknown_role')).reason, /role "nobody" does not exist on endpoint ep-/);
  await psqlError(uri.replace(/endpoint%3D(ep-[a-z0-9-]+)/, 'endpoint%3Dep-no-such-000000'));
  t.match((await refusal('unknown_endpoint')).reason, /endpoint "ep-no-such-000000" does not exist: deleted, or a typo/);
  // A token of bob's database presented for alice's endpoint.
  const token = (await call('POST', `/v1/databases/${other.id}/tokens`, partner.api_key, {})).token;
  await psqlError(uri.replace(`:${encodeURIComponent(db.password)}@`, '@').replace('options=endpoint%3D', 'options=auth%3Djwt%20endpoint%3D'), 'SELECT 1', { PGPASSWORD: token });
  t.match((await refusal('token_foreign')).reason, new RegExp(`token is not for this database.*presented for endpoint ${db.endpoint_id}`));
  await call('PATCH', `/v1/databases/${other.id}`, partner.api_key, { quotas: { compute_time_seconds: 0 } });
  await psqlError(other.connection_uri_no_sni);
  t.match((await refusal('quota')).reason, /quota exceeded: compute_time_seconds monthly limit of 0 is used up/);
});

t.test('a backend error carries Postgres\'s own message', async (t) => {
  const err = await psqlError((db.connection_uri_no_sni as string).replace('/app?', '/nosuch?'));
  t.match(err, /database "nosuch" does not exist/);
  t.match((await refusal('backend_error')).reason, /the compute refused the session on endpoint ep-.*: 3D000 database "nosuch" does not exist/);
});

t.test('wakes and suspends are logged with their duration and cause', async (t) => {
  t.equal(await psql(db.connection_uri_no_sni, 'SELECT 1'), '1');
  await call('POST', `/v1/databases/${db.id}/suspend`, partner.api_key);
  await call('POST', `/v1/databases/${db.id}/wake`, partner.api_key);
  const woken = lines.filter((l) => l.msg.startsWith('compute woken') && l.database === db.id);
  t.same(woken.map((l) => l.cause).slice(-2), ['connection', 'api']);
  t.ok(woken.every((l) => Number.isInteger(l.ms) && l.level === 30), 'with how long the start took, at INFO');
  const suspended = lines.filter((l) => l.msg.startsWith('compute suspended') && l.database === db.id);
  t.match(suspended.at(-1), { cause: 'api', level: 30 });
  t.ok(suspended.at(-1).ran_ms > 0 && Number.isInteger(suspended.at(-1).stop_ms), 'with how long it ran and how long the stop took');
});

t.test('a clean stop logs at INFO only, and says it stopped', async (t) => {
  const from = lines.length;
  const code = await new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
  t.equal(code, 0);
  const stopping = lines.slice(from);
  t.same(stopping.filter((l) => l.level > 30), [], 'no warning or error while stopping');
  t.match(stopping.find((l) => l.msg.startsWith('compute suspended')), { cause: 'shutdown', database: db.id });
  t.equal(stopping.at(-1).msg, 'pgfleet stopped');
});
