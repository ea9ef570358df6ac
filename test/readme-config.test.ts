/**
 * README's configuration table and the variables the gateway reads are the same set: a variable
 * listed that nothing reads is a bug, and so is one read that is not listed (or listed only
 * abbreviated: each is spelled out). The `pgfleet` command's own (PGFLEET_API_URL, _KEY) are the
 * CLI's, documented beside it.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from './helpers.ts';

const VARIABLE = /\b(?:PGFLEET_[A-Z0-9_]+|DATABASE_URL|REDIS_URL|NEON_API_[A-Z_]+)\b/g;
const CLI_ONLY = new Set(['PGFLEET_API_URL', 'PGFLEET_API_KEY']);

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(repoRoot, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.includes('console/app'))
    .map((f) => path.join(repoRoot, dir, f));
}

t.test('every variable the code reads is in the configuration table, spelled out, and nothing else is', async (t) => {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
  const names = table.split('\n').filter((l) => l.startsWith('| `')).map((row) => row.split(' | ')[0]!);
  t.same(names.filter((n) => /`_[A-Z]/.test(n)), [], 'no name abbreviated (`_PER_ADDRESS`)');
  const listed = new Set(names.flatMap((n) => n.match(VARIABLE) ?? []));
  const read = new Set<string>();
  for (const file of [...sources('src'), ...sources('api'), ...sources('proxy'), path.join(repoRoot, 'main.ts')]) {
    // A name in quotes or after process.env. is read; one in a comment or a message is not.
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/(?:'|process\.env\.)((?:PGFLEET_[A-Z0-9_]+|DATABASE_URL|REDIS_URL|NEON_API_[A-Z_]+))\b/g)) {
      if (!CLI_ONLY.has(m[1]!)) read.add(m[1]!);
    }
  }
  t.same([...listed].filter((v) => !read.has(v)).sort(), [], 'listed but read by nothing');
  t.same([...read].filter((v) => !listed.has(v)).sort(), [], 'read but not listed');
  t.ok(listed.size > 60, `the table lists ${listed.size} variables`);
});
