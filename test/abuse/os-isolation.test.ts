// Tenants apart at the OS level (issue 16, item 9), tried as a tenant that has gained code
// execution as its compute's OS user: no other tenant's files or socket, not the catalog's,
// and not its own compute as the superuser.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { branchRefOf, routeByEndpoint } from '../../src/catalog/routes.ts';
import { DEFAULT_REGISTRY } from '../../src/pg/os-user-pool.ts';
import { uidOf } from '../helpers.ts';
import { psql, startProxyFixture } from '../proxy-helpers.ts';

const run = promisify(execFile);
const root = process.getuid?.() === 0;

t.test('a compute\'s OS user reaches nothing of other tenants or of the catalog', { skip: !root && 'isolation needs root' }, async (t) => {
  const f = await startProxyFixture();
  t.teardown(() => f.stop());
  const [a, b] = [await f.createDatabase(), await f.createDatabase()];
  for (const db of [a, b]) t.equal(await psql(f.conninfo(db), 'SELECT 1'), '1', 'through pgfleet each tenant connects');
  const refOf = async (endpoint: string) => branchRefOf((await routeByEndpoint(f.core.catalog, endpoint))!);
  const [refA, refB] = [await refOf(a.endpointId), await refOf(b.endpointId)];
  const uid = uidOf(f.core.local.running.pid(refA.branchId)!);
  const gid = Number(/^Gid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${f.core.local.running.pid(refA.branchId)}/status`, 'utf8'))![1]);
  t.not(uid, uidOf(f.core.local.running.pid(refB.branchId)!), 'the two computes run as different OS users');

  /** Runs a command as tenant A's OS user; resolves its exit status and output. */
  const asTenantA = async (cmd: string, args: string[]) => {
    try {
      const { stdout } = await run(cmd, args, { uid, gid, env: { PATH: process.env.PATH!, PGCONNECT_TIMEOUT: '10' }, cwd: '/' });
      return { ok: true, out: stdout };
    } catch (err) {
      return { ok: false, out: String((err as { stderr?: string }).stderr) };
    }
  };
  const socketOf = (ref: typeof refA) => f.core.local.layout.socketDir(ref.branchId);
  t.ok((await asTenantA('ls', [f.core.local.dataDirOf(refA)])).ok, 'its own data directory is its own');
  t.match(await asTenantA('ls', [f.core.local.dataDirOf(refB)]), { ok: false, out: /Permission denied/ }, "another tenant's data directory is closed");
  t.match(await asTenantA('ls', [path.join(f.core.config.dataDir, 'catalog')]), { ok: false, out: /Permission denied/ }, "the catalog's directory is closed");
  t.match(await asTenantA('psql', ['-h', socketOf(refB), '-U', b.role, '-d', 'app', '-c', 'SELECT 1']), { ok: false },
    "another tenant's socket is unreachable");
  t.match(await asTenantA('psql', ['-h', path.join(f.core.runDir, 'catalog'), '-U', 'pgfleet_admin', '-d', 'postgres', '-c', 'SELECT 1']),
    { ok: false }, "the catalog's socket is unreachable");
  t.match(await asTenantA('psql', ['-h', socketOf(refA), '-U', 'pgfleet_admin', '-d', 'template1', '-c', 'SELECT 1']),
    { ok: false, out: /Peer authentication failed/ }, 'its own compute refuses it as the superuser: only pgfleet may connect');

  const dbDir = path.dirname(f.core.local.dataDirOf(refA));
  const claims = () => fs.readdirSync(DEFAULT_REGISTRY).filter((n) => fs.readFileSync(path.join(DEFAULT_REGISTRY, n), 'utf8') === dbDir);
  t.equal(claims().length, 1, "the database holds one pool user's claim");
  await f.core.databases.delete(f.partnerId, a.database.id);
  t.same(claims(), [], 'deleting the database returns its OS user to the pool');
});
