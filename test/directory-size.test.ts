// Storage metering of branches that share history by hard links: each file counts once in the sum.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { directorySize } from '../src/providers/local/directory-size.ts';
import { tmpDataDir } from './helpers.ts';

t.test('hard-linked files are shared out among their links', async (t) => {
  const root = tmpDataDir('dirsize');
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const [main, dev, old] = ['main', 'dev', 'old'].map((b) => path.join(root, b, 'archive'));
  for (const d of [main!, dev!, old!]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(main!, 'own'), Buffer.alloc(1000));
  fs.writeFileSync(path.join(main!, 'shared'), Buffer.alloc(3000));
  fs.linkSync(path.join(main!, 'shared'), path.join(dev!, 'shared'));
  fs.linkSync(path.join(main!, 'shared'), path.join(old!, 'shared'));
  fs.writeFileSync(path.join(dev!, 'mine'), Buffer.alloc(500));

  const sizes = await Promise.all([main, dev, old].map((d) => directorySize(path.dirname(d!))));
  t.same(sizes, [1000 + 1000, 1000 + 500, 1000], 'each of three links counts a third of the shared file');
  t.equal(sizes.reduce((a, b) => a + b), 1000 + 3000 + 500, 'the sum is the bytes on disk, each file once');

  fs.rmSync(path.join(root, 'old'), { recursive: true });
  t.same(await Promise.all([main, dev].map((d) => directorySize(path.dirname(d!)))), [1000 + 1500, 1500 + 500],
    'a deleted branch\'s share moves to the branches still holding the file');
  t.equal(await directorySize(path.join(root, 'missing')), 0);
});
