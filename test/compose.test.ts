/**
 * docker-compose.yml and Dockerfile, checked without a Docker engine: the compose file against
 * the Compose specification's JSON schema (test/schemas/compose-spec.json, vendored from
 * github.com/compose-spec/compose-spec, schema/compose-spec.json at commit 170098ba07d9), every
 * gateway variable read by pgfleet's config, and HAProxy's configuration accepted by haproxy -c.
 * test/fleet.test.ts runs the topology it describes from processes.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.ts';
import { repoRoot } from './helpers.ts';

const execFileAsync = promisify(execFile);
const schema = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test', 'schemas', 'compose-spec.json'), 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
// The spec names its meta-schema by its https address; it is draft-07's, which Ajv has under http.
const draft07 = JSON.parse(fs.readFileSync(path.join(repoRoot, 'node_modules', 'ajv', 'dist', 'refs', 'json-schema-draft-07.json'), 'utf8'));
ajv.addMetaSchema({ ...draft07, $id: 'https://json-schema.org/draft-07/schema' });
(addFormats as unknown as (a: Ajv) => void)(ajv);
const validate = ajv.compile(schema);
const compose = parse(fs.readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true });

/** ${NAME:-default} and ${NAME:?message} as docker compose would read them, with `vars` set. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
    if (vars[name] !== undefined && vars[name] !== '') return vars[name]!;
    if (op === '?') throw new Error(`${name} is required: ${arg}`);
    return op === '-' ? arg ?? '' : '';
  });
}

t.test('docker-compose.yml is valid under the Compose specification', async (t) => {
  t.ok(validate(compose), JSON.stringify(validate.errors));
  const broken = structuredClone(compose);
  broken.services.redis.healthcheck.retries = 'many';
  broken.services.catalog.depends_on = 42;
  t.notOk(validate(broken), 'the schema does refuse a broken file');
});

t.test('it describes the fleet: catalog, Redis, a store, two gateways, HAProxy, each with a health check, data in volumes', async (t) => {
  const services = compose.services as Record<string, any>;
  t.same(Object.keys(services).sort(), ['catalog', 'gateway-1', 'gateway-2', 'haproxy', 'minio', 'minio-bucket', 'redis']);
  // minio-bucket runs once (it makes the bucket) and has nothing to check afterwards.
  for (const [name, service] of Object.entries(services)) if (service.restart !== 'no') t.ok(service.healthcheck?.test, `${name} has a health check`);
  for (const name of ['catalog', 'redis', 'minio', 'gateway-1', 'gateway-2']) {
    const mounts = (services[name].volumes as string[]).map((v) => v.split(':')[0]);
    t.ok(mounts.some((m) => m in compose.volumes), `${name} keeps its data in a named volume`);
  }
  for (const name of ['gateway-1', 'gateway-2']) {
    t.equal(services[name].depends_on.catalog.condition, 'service_healthy', `${name} waits for the catalog`);
    t.equal(services[name].depends_on.redis.condition, 'service_healthy', `${name} waits for Redis`);
    t.equal(services[name].depends_on['minio-bucket'].condition, 'service_completed_successfully', `${name} waits for the store's bucket`);
  }
  t.same(services.haproxy.ports, ['5432:5432', '8080:8080']);
});

t.test('every gateway variable is one pgfleet reads, and the set is a valid fleet config', async (t) => {
  const configSource = ['config.ts', 'config-regions.ts', 'storage/storage-config.ts'].map((f) => fs.readFileSync(path.join(repoRoot, 'src', f), 'utf8')).join('');
  const dockerfile = fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
  const imageEnv = Object.fromEntries([...dockerfile.matchAll(/(PGFLEET_\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  const vars = { PGFLEET_SECRET_KEY: 'ab'.repeat(32), PGFLEET_ADMIN_KEY: 'compose-admin-key-0123456789' };
  const nodeIds = new Set<string>();
  for (const name of ['gateway-1', 'gateway-2']) {
    const env: Record<string, string> = { ...imageEnv };
    for (const [key, value] of Object.entries(compose.services[name].environment as Record<string, string>)) {
      t.ok(configSource.includes(`'${key}'`), `${name}: ${key} is read by src/config`);
      env[key] = interpolate(String(value), vars);
    }
    for (const key of Object.keys(imageEnv)) t.ok(configSource.includes(`'${key}'`), `Dockerfile: ${key} is read by src/config`);
    const config = loadConfig(env);
    t.equal(config.redisUrl, 'redis://redis:6379');
    t.match(config.databaseUrl, /^postgres:\/\/pgfleet:.*@catalog:5432\/pgfleet$/);
    t.equal(config.node.advertise, `${name}:7000`);
    t.equal(config.node.port, 7000);
    t.match(config.storage.location, { kind: 's3', bucket: 'pgfleet', prefix: 'fleet/', endpoint: 'http://minio:9000', pathStyle: true }, `${name} shares the MinIO store`);
    nodeIds.add(config.nodeId!);
  }
  t.equal(nodeIds.size, 2, 'each gateway is its own node');
  t.throws(() => interpolate(compose.services['gateway-1'].environment.PGFLEET_SECRET_KEY, {}), /PGFLEET_SECRET_KEY is required/,
    'compose refuses to start without the shared secret key');
});

t.test('deploy/haproxy.cfg is a valid HAProxy configuration', async (t) => {
  const { stderr } = await execFileAsync('haproxy', ['-c', '-f', path.join(repoRoot, 'deploy', 'haproxy.cfg')]);
  t.notMatch(stderr, /ALERT/);
});
