import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { SecretBox, ensureSecretKey, parseSecretKey } from '../src/secret-box.ts';
import { tmpDataDir } from './helpers.ts';

const box = new SecretBox(Buffer.alloc(32, 1));

t.test('round trip', async (t) => {
  const sealed = box.seal('s3cret password', 'proj-1/alice');
  t.notMatch(sealed, /s3cret/);
  t.not(box.seal('s3cret password', 'proj-1/alice'), sealed, 'a fresh IV each time');
  t.equal(box.open(sealed, 'proj-1/alice'), 's3cret password');
});

t.test('tampering, another context or another key is detected', async (t) => {
  const sealed = box.seal('s3cret password', 'proj-1/alice');
  const parts = sealed.split('.');
  const body = Buffer.from(parts[4]!, 'base64url');
  body[0]! ^= 1;
  const tampered = [...parts.slice(0, 4), body.toString('base64url')].join('.');
  t.throws(() => box.open(tampered, 'proj-1/alice'), /does not verify/);
  t.throws(() => box.open(sealed, 'proj-2/alice'), /does not verify/, 'bound to its record');
  t.throws(() => new SecretBox(Buffer.alloc(32, 2)).open(sealed, 'proj-1/alice'), /sealed with another key/);
  t.throws(() => box.open('plaintext', 'proj-1/alice'), /not a sealed secret/);
});

t.test('keys: hex or base64; generated once under the data dir with mode 0600', async (t) => {
  const key = Buffer.alloc(32, 9);
  t.same(parseSecretKey(key.toString('hex')), key);
  t.same(parseSecretKey(key.toString('base64')), key);
  t.equal(parseSecretKey('too short'), undefined);
  const dir = tmpDataDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = ensureSecretKey(dir, undefined);
  t.equal(fs.statSync(path.join(dir, 'secret-key')).mode & 0o777, 0o600);
  t.same(ensureSecretKey(dir, undefined), first, 'the same key at the next start');
  t.same(ensureSecretKey(dir, key), key, 'a configured key wins');
});
