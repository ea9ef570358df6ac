// The WAL receiver against a real compute: what a compute writes, and the WAL of its stop, reach the
// store, and its stop is a few status updates, not a busy loop of keepalive round trips.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { PgInstalls } from '../src/pg/install.ts';
import { resolveComputeUser } from '../src/pg/os-user.ts';
import { ADMIN_ROLE, PostgresServer, SOCKET_PORT, initCluster } from '../src/pg/server.ts';
import { checkpointPosition } from '../src/providers/local/compute-admin.ts';
import { WalArchive, segmentStart } from '../src/providers/local/wal-archive.ts';
import { WalStreamer } from '../src/providers/local/wal-streamer.ts';
import { parseLsn } from '../src/providers/point-in-time.ts';
import { createLogger } from '../src/log.ts';
import { FileStore } from '../src/storage/file-store.ts';
import { SealedStore } from '../src/storage/sealed-store.ts';
import { testConfig } from './helpers.ts';

const config = testConfig({}, { seed: false });
t.teardown(() => fs.rmSync(config.dataDir, { recursive: true, force: true }));
const user = resolveComputeUser(config.computeUser);
const install = PgInstalls.discover(config.pgBin, user, config.dataDir).get();

for (const sync of [false, true]) {
  t.test(`${sync ? 'sync' : 'async'}: what the compute wrote and the WAL of its stop are stored; the stop takes a few status updates`, async (t) => {
    const dir = path.join(config.dataDir, sync ? 'sync' : 'async');
    const pgdata = path.join(dir, 'pgdata');
    await initCluster(install, user, pgdata);
    const socketDir = path.join(dir, 'run');
    const server = new PostgresServer({
      install, user, pgdata, socketDir, logFile: path.join(dir, 'postgres.log'), startTimeoutMs: 30_000,
      settings: { wal_level: 'replica', max_wal_senders: 2, max_replication_slots: 2, ...(sync ? { synchronous_standby_names: 'pgfleet_wal' } : {}) },
    });
    await server.start();
    t.teardown(() => server.stop());
    const client = new pg.Client({ host: socketDir, port: SOCKET_PORT, user: ADMIN_ROLE, database: 'postgres' });
    await client.connect();
    const start = segmentStart(parseLsn((await client.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn));
    const archive = new WalArchive(new SealedStore(new FileStore(path.join(dir, 'store')), crypto.randomBytes(32)), 'db-streamer-test');
    const streamer = new WalStreamer({
      socketDir, pgdata, archive, historyId: 'hist-1', tli: 1, start, sync, maxLagMs: 1000, canWrite: () => true, log: createLogger('silent'),
    });
    await streamer.start();
    await client.query('CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g');
    await client.end();
    await server.stop('fast');
    await streamer.finished;
    const shutdownCheckpoint = BigInt(checkpointPosition(pgdata));
    t.ok(await archive.end('hist-1', 1, start) > shutdownCheckpoint, 'the store holds the WAL up to and past the shutdown checkpoint');
    t.ok(streamer.statusReports <= 20, `the stop took ${streamer.statusReports} status updates (a keepalive answered at once with nothing new took thousands)`);
  });
}
