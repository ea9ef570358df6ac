// The store's parts on their own: the storage URL, sealing (a torn, altered or moved object is
// refused), snapshots (only new chunks uploaded), WAL parts joined into segments.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { WalArchive, SEGMENT_BYTES, segmentName } from '../src/providers/local/wal-archive.ts';
import { FileStore } from '../src/storage/file-store.ts';
import { listAll } from '../src/storage/object-store.ts';
import { SealedStore } from '../src/storage/sealed-store.ts';
import { chunkLocations, readManifest, restoreTree, snapshotTree } from '../src/storage/snapshots.ts';
import { tmpDataDir } from './helpers.ts';

const base = { PGFLEET_DATA_DIR: '/tmp/pgfleet-units' };
const key = { PGFLEET_SECRET_KEY: 'ab'.repeat(32) };

t.test('PGFLEET_STORAGE_URL: S3 with its endpoint, region, path style and credentials; a directory; unset; mistakes named', async (t) => {
  const s3 = loadConfig({ ...base, ...key, PGFLEET_STORAGE_URL: 's3://AKID:sec%2Fret@tenants/prod/eu?endpoint=http://minio:9000&region=eu-west-1' }).storage;
  t.match(s3, { offHost: true, location: { kind: 's3', bucket: 'tenants', prefix: 'prod/eu/', endpoint: 'http://minio:9000', region: 'eu-west-1', pathStyle: true, credentials: { accessKeyId: 'AKID', secretAccessKey: 'sec/ret' } } });
  const aws = loadConfig({ ...base, ...key, PGFLEET_STORAGE_URL: 's3://tenants', AWS_REGION: 'us-west-2' }).storage;
  t.match(aws.location, { kind: 's3', prefix: '', endpoint: undefined, region: 'us-west-2', pathStyle: false, credentials: undefined }, 'AWS itself: virtual-hosted, credentials from the SDK\'s chain');
  t.match(loadConfig({ ...base, ...key, PGFLEET_STORAGE_URL: 'file:///srv/store' }).storage.location, { kind: 'file', root: '/srv/store' });
  const unset = loadConfig(base).storage;
  t.same([unset.offHost, unset.location], [false, { kind: 'file', root: '/tmp/pgfleet-units/store' }], 'unset: a directory inside the data dir');
  for (const [url, message] of [
    ['ftp://x/y', /must be s3:\/\/ or file:\/\//], ['s3://A/b', /not a bucket name/], ['s3://bucket/p?endpont=x', /unknown parameter "endpont"/],
    ['s3://only-key@bucket', /access key and secret together/], ['file://relative/dir', /absolute path/],
  ] as const) {
    t.throws(() => loadConfig({ ...base, ...key, PGFLEET_STORAGE_URL: url }), { message }, url);
  }
  t.throws(() => loadConfig({ ...base, PGFLEET_STORAGE_URL: 's3://bucket' }), { message: /PGFLEET_SECRET_KEY: must be set when PGFLEET_STORAGE_URL is/ },
    'a store off the node needs a key that is not kept only on the node');
});

t.test('sealed objects: what went in comes out; torn, altered, moved or foreign ones are refused', async (t) => {
  const dir = tmpDataDir('units-store');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const files = new FileStore(dir);
  const store = new SealedStore(files, crypto.randomBytes(32));
  const body = Buffer.from('row data of a tenant '.repeat(500));
  await store.put('db-a', 'db/db-a/x', body);
  t.same(await store.get('db-a', 'db/db-a/x'), body);
  t.equal(await store.get('db-a', 'db/db-a/missing'), undefined, 'a missing object is undefined');
  const raw = fs.readFileSync(path.join(dir, 'db/db-a/x'));
  t.notOk(raw.includes(Buffer.from('row data')), 'nothing readable on disk');
  fs.writeFileSync(path.join(dir, 'db/db-a/x'), raw.subarray(0, raw.length - 10));
  await t.rejects(store.get('db-a', 'db/db-a/x'), { code: 'store_integrity', message: /authentication failed/ }, 'a torn object');
  fs.writeFileSync(path.join(dir, 'db/db-a/x'), raw);
  await files.put('db/db-a/y', raw);
  await t.rejects(store.get('db-a', 'db/db-a/y'), { code: 'store_integrity' }, 'an object moved to another name');
  await t.rejects(store.get('db-b', 'db/db-a/x'), { code: 'store_integrity' }, 'another database\'s key');
  await t.rejects(new SealedStore(files, crypto.randomBytes(32)).get('db-a', 'db/db-a/x'), { code: 'store_integrity' }, 'another PGFLEET_SECRET_KEY');
  await files.put('db/db-a/z', Buffer.from('not sealed'));
  await t.rejects(store.get('db-a', 'db/db-a/z'), { code: 'store_integrity', message: /not a sealed object/ });
  t.same((await listAll(files, 'db/db-a/')).map((o) => o.key), ['db/db-a/x', 'db/db-a/y', 'db/db-a/z'], 'no temporary file is listed');
});

t.test('snapshots: a tree comes back as it was; a second snapshot uploads only the chunks that changed', async (t) => {
  const dir = tmpDataDir('units-snap');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = new SealedStore(new FileStore(path.join(dir, 'store')), crypto.randomBytes(32));
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(path.join(tree, 'base', 'empty'), { recursive: true });
  const big = crypto.randomBytes(3 * 1024 * 1024 + 123);
  fs.writeFileSync(path.join(tree, 'base', 'rel'), big);
  fs.writeFileSync(path.join(tree, 'zeros'), Buffer.alloc(2 * 1024 * 1024));
  fs.writeFileSync(path.join(tree, 'small'), 'x', { mode: 0o640 });
  const opts = { dir: tree, scope: 'db-a' as const, packPrefix: 'db/db-a/packs/', known: new Map() };
  const first = await snapshotTree(store, { ...opts, manifestKey: 'db/db-a/backups/one' });
  t.equal(first.bytes, big.length + 2 * 1024 * 1024 + 1);
  big[5] ^= 1;
  fs.writeFileSync(path.join(tree, 'base', 'rel'), big);
  const second = await snapshotTree(store, { ...opts, manifestKey: 'db/db-a/backups/two', known: chunkLocations(first.manifest) });
  t.ok(second.uploadedBytes < first.uploadedBytes / 3, `the second uploads one changed chunk (${second.uploadedBytes} bytes against ${first.uploadedBytes})`);
  const back = path.join(dir, 'back');
  await restoreTree(store, await readManifest(store, 'db-a', 'db/db-a/backups/two'), back);
  t.same(fs.readFileSync(path.join(back, 'base', 'rel')), big, 'a big file, chunk by chunk');
  t.same(fs.readFileSync(path.join(back, 'zeros')), Buffer.alloc(2 * 1024 * 1024), 'repeated chunks');
  t.equal(fs.statSync(path.join(back, 'small')).mode & 0o777, 0o640, 'modes kept');
  t.ok(fs.statSync(path.join(back, 'base', 'empty')).isDirectory(), 'empty directories kept');
});

t.test('WAL parts join into a segment while they follow on from its start; a gap ends it', async (t) => {
  const dir = tmpDataDir('units-wal');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const archive = new WalArchive(new SealedStore(new FileStore(dir), crypto.randomBytes(32)), 'db-a');
  const start = 5n * BigInt(SEGMENT_BYTES);
  const name = segmentName(1, start);
  await archive.putPart('h1', 1, start, Buffer.alloc(1000, 1));
  await archive.putPart('h1', 1, start + 1000n, Buffer.alloc(500, 2));
  const seg = (await archive.segment('h1', name))!;
  t.equal(seg.valid, 1500);
  t.same([seg.data[999], seg.data[1000], seg.data[1499], seg.data[1500]], [1, 2, 2, 0], 'zeros past the last part, as Postgres pads a partial segment');
  t.equal(await archive.end('h1', 1, start), start + 1500n);
  await archive.putPart('h1', 1, start + 3000n, Buffer.alloc(100, 3));
  t.equal((await archive.segment('h1', name))!.valid, 1500, 'a part past a gap is not joined');
  t.equal(await archive.segment('h1', segmentName(1, start + BigInt(SEGMENT_BYTES))), undefined);
  await archive.putSegment('h1', name, Buffer.alloc(SEGMENT_BYTES, 7));
  await archive.dropParts('h1', name);
  t.equal((await archive.segment('h1', name))!.valid, SEGMENT_BYTES, 'the whole segment once it is stored');
  t.equal(await archive.end('h1', 1, start), start + BigInt(SEGMENT_BYTES));
});

t.test('a directory store leaves no empty directory behind a deleted prefix', async (t) => {
  const dir = tmpDataDir('units-del');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const files = new FileStore(dir);
  await files.put('db/db-a/wal/h1/x', Buffer.from('1'));
  await files.put('db/db-a/packs/p', Buffer.from('2'));
  await files.put('db/db-b/packs/p', Buffer.from('3'));
  await files.delete((await listAll(files, 'db/db-a/')).map((o) => o.key));
  t.same(fs.readdirSync(path.join(dir, 'db')), ['db-b'], 'db-a is gone, directories and all; db-b stays');
});
