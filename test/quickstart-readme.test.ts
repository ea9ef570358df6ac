// README's quick start, as written: after the clone, `npm install` and `npm link` (here: bin/pgfleet.js
// linked into a directory on PATH, which is what npm link does), its commands reach a psql prompt.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { postmastersUnder, repoRoot, tmpDataDir } from './helpers.ts';
import { freePort } from './proxy-helpers.ts';

const execFileAsync = promisify(execFile);

t.test('the quick start gives a psql prompt on a database of ones own', async (t) => {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## Set-up'));
  const lines = /```sh\n([\s\S]*?)```/.exec(section)![1]!.trim().split('\n');
  t.equal(lines.length, 5, 'five commands');
  t.match(lines[0], /git clone .* && npm install && npm link$/);
  const dir = tmpDataDir('pgfleet-quickstart');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.symlinkSync(path.join(repoRoot, 'bin', 'pgfleet.js'), path.join(dir, 'bin', 'pgfleet'));
  const apiPort = await freePort();
  const script = `${lines.slice(1).join('\n')}\nkill $!\nwait\n`;
  const { stdout } = await execFileAsync('bash', ['-e', '-c', `echo 'SELECT current_user, 6 * 7 AS answer;' | (${script})`], {
    cwd: dir,
    env: {
      ...process.env, PATH: `${path.join(dir, 'bin')}:${process.env.PATH}`, PGFLEET_API_PORT: String(apiPort), PGFLEET_PROXY_PORT: String(await freePort()),
      PGFLEET_API_URL: `http://127.0.0.1:${apiPort}`, PGCONNECT_TIMEOUT: '60',
    },
    timeout: 300_000,
  });
  t.match(stdout, /current_user\s*\|\s*answer\s*\n-+\+-+\n\s*app_owner\s*\|\s*42/, 'psql answered as the database owner');
  t.ok(fs.existsSync(path.join(dir, '.pgfleet')), 'everything under ./.pgfleet');
  t.same(postmastersUnder(dir), [], 'and the gateway stopped with its computes');
});
