/**
 * Branch and restore times beside plain Postgres doing the same work, for pgbench databases of
 * growing size, with the store on local disk (file://) and in an S3 server (s3rver); and what an
 * empty database costs in the store and, evicted, on the node's disk.
 *  - branch "now" of a suspended database, until its first query answers, beside `cp -a` of its data directory;
 *  - restore to a moment a few seconds back (base backup + WAL from the store), until the first query
 *    answers, beside `cp -a` of the same base backup + `pg_ctl start` in recovery to the same target
 *    with the same WAL already on disk (what a DBA runs), until it takes connections (promoted).
 * Run: node --import ./bin/load-ts.mjs bench/branch.ts [pgbench scales=1,7] [stores=file,s3]   (scale 1 ≈ 16 MB of tables, 7 ≈ 100 MB)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startGateway } from '../main.ts';
import { routeByBranch } from '../src/catalog/routes.ts';
import { chownTree, spawnIdentity } from '../src/pg/os-user.ts';
import { directorySize } from '../src/providers/local/directory-size.ts';
import { fetchWal, restoreBase } from '../src/providers/local/history-recovery.ts';
import { planRecovery } from '../src/providers/local/history-plan.ts';
import { restoreCommand } from '../src/providers/local/recovery.ts';
import { testConfig } from '../test/helpers.ts';
import { startS3 } from '../test/s3-server.ts';
import { PlainPostgres } from './plain-postgres.ts';
import { timed } from './stats.ts';

const execFileAsync = promisify(execFile);
const scales = (process.argv[2] ?? '1,7').split(',').map(Number);
const stores = (process.argv[3] ?? 'file,s3').split(',');
const MB = 1024 * 1024;

for (const kind of stores) {
  const s3 = kind === 's3' ? await startS3() : undefined;
  const config = testConfig({
    PGFLEET_LOG_LEVEL: 'warn', PGFLEET_WAKE_TIMEOUT: '300', PGFLEET_LOCAL_EVICT_AFTER: '3600',
    ...(s3 ? { PGFLEET_STORAGE_URL: s3.url('bench'), PGFLEET_SECRET_KEY: '11'.repeat(32) } : {}),
  });
  const gw = await startGateway(config);
  const { core } = gw;
  const local = core.local;
  const store = local.opts.storage.store;
  const partnerId = 'bench';
  await core.catalog.query(`INSERT INTO partners (id, name) VALUES ($1, 'bench')`, [partnerId]);
  const storedBytes = async (databaseId: string) => {
    local.storeBytes.changed(databaseId);
    return local.storeBytes.of(databaseId);
  };
  const firstQuery = async (endpoint: string, db: { ownerRole: string; databaseName: string }, password: string) => {
    const client = new pg.Client({
      host: '127.0.0.1', port: gw.proxyPort, user: db.ownerRole, password, database: db.databaseName,
      ssl: { rejectUnauthorized: false }, options: `endpoint=${endpoint}`,
    });
    await client.connect();
    await client.query('SELECT 1');
    await client.end();
  };
  console.log(`\n== store: ${store.location}`);

  // The empty database: created, started once, suspended, evicted.
  {
    const { database, password } = await core.databases.create({ partnerId, userId: 'empty' });
    await firstQuery(database.endpointId, database, password);
    await core.databases.suspend(partnerId, database.id);
    const route = (await routeByBranch(core.catalog, database.branchId))!;
    const dir = local.layout.branchDir('local', database.id, database.branchId);
    const onDisk = await directorySize(dir);
    await local.files.evict(core.targetFor(route).ref);
    console.log(`empty database: ${(onDisk / MB).toFixed(1)} MB on the node's disk while cached, ${((await directorySize(path.dirname(dir))) / MB).toFixed(1)} MB once evicted; `
      + `${((await storedBytes(database.id)) / MB).toFixed(2)} MB in the store`);
  }

  console.log('scale  data MB  branch ms  cp -a ms  ratio | restore ms  cp+recovery ms  ratio | store MB');
  for (const scale of scales) {
    const { database, password } = await core.databases.create({ partnerId, userId: `s${scale}`, suspendTimeoutSeconds: 0 });
    await core.databases.wake(partnerId, database.id);
    const dir = local.layout.branchDir('local', database.id, database.branchId);
    const socketDir = local.layout.socketDir(database.branchId);
    // Only the gateway's OS user may enter a compute's socket (peer authentication).
    const asGateway = { env: { PATH: process.env.PATH } };
    await execFileAsync('pgbench', ['-i', '-q', '-s', String(scale), '-h', socketDir, '-p', '5432', '-U', 'pgfleet_admin', database.databaseName], asGateway);
    // The stop stores a base backup of the clean data directory (its first own one).
    await core.databases.suspend(partnerId, database.id);
    const dataBytes = await directorySize(path.join(dir, 'pgdata'));

    // Branch now of the suspended database, beside cp -a of its data directory.
    const branchMs = await timed(async () => {
      const branch = await core.branches.create(partnerId, database.id, { name: 'dev' });
      await firstQuery(branch.endpointId, database, password);
    });
    const copyDir = path.join(config.dataDir, `copy-${scale}`);
    const cpMs = await timed(() => execFileAsync('cp', ['-a', path.join(dir, 'pgdata'), copyDir]));
    fs.rmSync(copyDir, { recursive: true, force: true });

    // Writes, a target a few seconds back, more writes; then restore to the target.
    await core.databases.wake(partnerId, database.id);
    const psql = (sql: string) => execFileAsync('psql', ['-X', '-h', socketDir, '-p', '5432', '-U', 'pgfleet_admin', '-d', database.databaseName, '-c', sql], asGateway);
    await psql('UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0');
    const target = new Date();
    await new Promise((r) => setTimeout(r, 200));
    await psql('UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 1');
    // The baseline's inputs: the base backup the restore will start from and the WAL to the target, on disk before the clock starts.
    const histories = local.opts.storage.histories;
    const chain = await histories.chain((await histories.ofBranch(database.branchId))!.id);
    await local.markRunningHistoryEnd(core.targetFor((await routeByBranch(core.catalog, database.branchId))!).ref);
    const plan = planRecovery(chain, await histories.backups(chain.map((h) => h.id)), { time: target });
    if (plan.base.kind === 'template') throw new Error('the restore would start from the template, not a base backup of the data');
    const plainSource = path.join(config.dataDir, `plain-${scale}`, 'source');
    fs.mkdirSync(path.dirname(plainSource), { recursive: true });
    await restoreBase({ store, user: core.user, localTemplate: () => undefined }, plan.base, plainSource);
    fs.mkdirSync(path.join(plainSource, 'wal'));
    await fetchWal(local.archiveOf(database.id), plan, path.join(plainSource, 'wal'));
    chownTree(plainSource, core.user);

    const restoreMs = await timed(async () => {
      await core.branches.restore(partnerId, database.id, { at: target.toISOString() });
      await firstQuery(database.endpointId, database, password);
    });
    const plainDir = path.join(config.dataDir, `plain-${scale}`, 'pgdata');
    const plain = new PlainPostgres(core.installs.get(), core.user, plainDir);
    const recovery = {
      restore_command: restoreCommand(path.join(plainSource, 'wal')),
      recovery_target_time: target.toISOString().replace('T', ' ').replace('Z', '+00'),
      recovery_target_action: 'promote', hot_standby: 'off', archive_mode: 'off',
    };
    let baselineMs = NaN;
    try {
      baselineMs = await timed(async () => {
        await execFileAsync('cp', ['-a', plainSource, plainDir], { ...spawnIdentity(core.user) });
        fs.writeFileSync(path.join(plainDir, 'recovery.signal'), '');
        fs.appendFileSync(path.join(plainDir, 'postgresql.auto.conf'),
          Object.entries(recovery).map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'\n`).join(''));
        await plain.start({ unix_socket_permissions: '0700' });
        await plain.untilAcceptingConnections('pgfleet_admin');
      });
      await plain.stop();
    } catch (err) {
      console.log(`  (the baseline failed: ${(err as Error).message.split('\n')[0]})`);
    }
    fs.rmSync(path.dirname(plainDir), { recursive: true, force: true });

    console.log(`${String(scale).padStart(5)}  ${(dataBytes / MB).toFixed(0).padStart(7)}  ${branchMs.toFixed(0).padStart(9)}  ${cpMs.toFixed(0).padStart(8)}  ${(branchMs / cpMs).toFixed(2).padStart(5)} |` +
      ` ${restoreMs.toFixed(0).padStart(10)}  ${baselineMs.toFixed(0).padStart(14)}  ${(restoreMs / baselineMs).toFixed(2).padStart(5)} | ${((await storedBytes(database.id)) / MB).toFixed(1)}`);
  }
  await gw.stop();
  fs.rmSync(config.dataDir, { recursive: true, force: true });
  await s3?.close();
}
