/**
 * Branch and restore times beside plain Postgres doing the same work, for pgbench databases of
 * growing size; and the disk a branch adds.
 *  - branch "now" of a suspended database, until its first query answers, beside `cp -a` of its data directory;
 *  - restore to a moment a few seconds back (base backup + archived WAL), until the first query answers,
 *    beside `cp -a` of the same base backup + `pg_ctl start -w` in recovery to the same target (what a DBA runs).
 * Run: npx tsx bench/branch.ts [pgbench scales=1,7]   (scale 1 ≈ 16 MB of tables, 7 ≈ 100 MB, 70 ≈ 1 GB)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startGateway } from '../main.ts';
import { branchRefOf, routeByBranch } from '../src/catalog/routes.ts';
import { backupFor, baseBackups } from '../src/providers/local/base-backups.ts';
import type { LocalBranching } from '../src/providers/local/branching.ts';
import { restoreCommand } from '../src/providers/local/wal.ts';
import { spawnIdentity } from '../src/pg/os-user.ts';
import { directorySize } from '../src/providers/local/directory-size.ts';
import { testConfig } from '../test/helpers.ts';
import { PlainPostgres } from './plain-postgres.ts';
import { timed } from './stats.ts';

const execFileAsync = promisify(execFile);
const scales = (process.argv[2] ?? '1,7').split(',').map(Number);
const MB = 1024 * 1024;
/** Bytes under a directory, each hard-linked file once (what a branch really adds). */
const du = async (dir: string) => Number((await execFileAsync('du', ['-sb', dir])).stdout.split('\t')[0]);

const config = testConfig({ PGFLEET_LOG_LEVEL: 'warn', PGFLEET_WAKE_TIMEOUT: '300' });
const gw = await startGateway(config);
const { core } = gw;
const partnerId = 'bench';
await core.catalog.query(`INSERT INTO partners (id, name) VALUES ($1, 'bench')`, [partnerId]);

async function firstQuery(endpoint: string, db: { ownerRole: string; databaseName: string }, password: string): Promise<void> {
  const client = new pg.Client({
    host: '127.0.0.1', port: gw.proxyPort, user: db.ownerRole, password, database: db.databaseName,
    ssl: { rejectUnauthorized: false }, options: `endpoint=${endpoint}`,
  });
  await client.connect();
  await client.query('SELECT 1');
  await client.end();
}

// The empty database: created, started once, suspended.
{
  const { database, password } = await core.databases.create({ partnerId, userId: 'empty' });
  await firstQuery(database.endpointId, database, password);
  await core.databases.suspend(partnerId, database.id);
  const dir = core.local.layout.branchDir('local', database.id, database.branchId);
  const part = async (name: string) => ((await directorySize(path.join(dir, name))) / MB).toFixed(1);
  console.log(`empty database on disk: ${((await directorySize(dir)) / MB).toFixed(1)} MB: pgdata ${await part('pgdata')} MB, WAL archive ${await part('archive')} MB, ` +
    `base backups ${await part('backups')} MB`);
}

console.log('\nscale  data MB  branch ms  cp -a ms  ratio | restore ms  cp+recovery ms  ratio | disk a branch adds');
for (const scale of scales) {
  const { database, password } = await core.databases.create({ partnerId, userId: `s${scale}`, suspendTimeoutSeconds: 0 });
  await core.databases.wake(partnerId, database.id);
  const dir = core.local.layout.branchDir('local', database.id, database.branchId);
  const socketDir = core.local.layout.socketDir(database.branchId);
  // Only the gateway's OS user may enter a compute's socket (peer authentication).
  const asCompute = { env: { PATH: process.env.PATH } };
  await execFileAsync('pgbench', ['-i', '-q', '-s', String(scale), '-h', socketDir, '-p', '5432', '-U', 'pgfleet_admin', database.databaseName], asCompute);
  await core.databases.suspend(partnerId, database.id);
  // The base backup the restore starts from: the clean data directory after the load.
  const ref = branchRefOf((await routeByBranch(core.catalog, database.branchId))!);
  await (core.local.history as LocalBranching).copyBackup(ref, core.local.historyEnd(ref)!);
  const dataBytes = await directorySize(path.join(dir, 'pgdata'));

  // Branch now of the suspended database, beside cp -a of its data directory.
  const dbDir = core.local.layout.databaseDir('local', database.id);
  const before = await du(dbDir);
  const branchMs = await timed(async () => {
    const branch = await core.branches.create(partnerId, database.id, { name: 'dev' });
    await firstQuery(branch.endpointId, database, password);
  });
  const added = (await du(dbDir)) - before;
  const copyDir = path.join(config.dataDir, `copy-${scale}`);
  const cpMs = await timed(() => execFileAsync('cp', ['-a', path.join(dir, 'pgdata'), copyDir]));
  fs.rmSync(copyDir, { recursive: true, force: true });

  // Writes, a target a few seconds back, more writes; then restore to the target.
  await core.databases.wake(partnerId, database.id);
  await execFileAsync('psql', ['-X', '-h', socketDir, '-p', '5432', '-U', 'pgfleet_admin', '-d', database.databaseName, '-c',
    'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0'], asCompute);
  const target = new Date();
  await new Promise((r) => setTimeout(r, 200));
  await execFileAsync('psql', ['-X', '-h', socketDir, '-p', '5432', '-U', 'pgfleet_admin', '-d', database.databaseName, '-c',
    'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 1'], asCompute);
  const restoreMs = await timed(async () => {
    await core.branches.restore(partnerId, database.id, { at: target.toISOString() });
    await firstQuery(database.endpointId, database, password);
  });

  // Baseline: the same base backup copied, and plain Postgres recovering to the same target.
  const before2 = (await core.catalog.query(`SELECT id FROM branches WHERE database_id = $1 AND name LIKE 'main_before_%'`, [database.id])).rows[0].id;
  const beforeDir = core.local.layout.branchDir('local', database.id, before2);
  const base = backupFor(await baseBackups.list(core.catalog, before2), { time: target })!;
  if (base.kind === 'template') throw new Error('the restore started from the template, not a base backup of the data');
  const plainDir = path.join(config.dataDir, `plain-${scale}`, 'pgdata');
  const plain = new PlainPostgres(core.installs.get(), core.user, plainDir);
  // The baseline runs as another OS user than the database's: it starts from its own copy of the
  // base backup and the archive, made before the clock starts.
  const plainSource = path.join(config.dataDir, `plain-${scale}`, 'source');
  await execFileAsync('cp', ['-a', path.join(beforeDir, 'backups', base.id), plainSource]);
  await execFileAsync('cp', ['-a', path.join(beforeDir, 'archive'), path.join(plainSource, 'archive')]);
  await execFileAsync('chown', ['-R', `${core.user.uid}:${core.user.gid}`, plainSource]);
  const recovery = {
    restore_command: restoreCommand(path.join(plainSource, 'archive')),
    recovery_target_time: target.toISOString().replace('T', ' ').replace('Z', '+00'),
    recovery_target_action: 'promote', hot_standby: 'off', archive_mode: 'off',
  };
  const baselineMs = await timed(async () => {
    await execFileAsync('cp', ['-a', plainSource, plainDir], { ...spawnIdentity(core.user) });
    fs.writeFileSync(path.join(plainDir, 'recovery.signal'), '');
    fs.appendFileSync(path.join(plainDir, 'postgresql.auto.conf'),
      Object.entries(recovery).map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'\n`).join(''));
    await plain.start({ unix_socket_permissions: '0700' });
  });
  await plain.stop();
  fs.rmSync(path.dirname(plainDir), { recursive: true, force: true });

  console.log(`${String(scale).padStart(5)}  ${(dataBytes / MB).toFixed(0).padStart(7)}  ${branchMs.toFixed(0).padStart(9)}  ${cpMs.toFixed(0).padStart(8)}  ${(branchMs / cpMs).toFixed(2).padStart(5)} |` +
    ` ${restoreMs.toFixed(0).padStart(10)}  ${baselineMs.toFixed(0).padStart(14)}  ${(restoreMs / baselineMs).toFixed(2).padStart(5)} | ${(added / MB).toFixed(1)} MB`);
}
await gw.stop();
fs.rmSync(config.dataDir, { recursive: true, force: true });
