// What a person and a machine read at start: the log formats (secrets redacted in both), and the
// warning that says what OS isolation is lost when pgfleet is not root.
import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import t from 'tap';
import { announceIsolation } from '../src/gateway.ts';
import { TS_LOADER, repoRoot } from './helpers.ts';

const execFileAsync = promisify(execFile);

/** One line logged by createLogger in a child process whose stdout is a pipe (not a TTY). */
async function logLine(format: string | undefined): Promise<string> {
  const script = `import { loadConfig } from './src/config.ts'; import { createLogger } from './src/log.ts';
    const c = loadConfig({ PGFLEET_DATA_DIR: '/tmp/unused'${format ? `, PGFLEET_LOG_FORMAT: '${format}'` : ''} });
    createLogger('info', c.logFormat).info({ password: 's3cret-pw', database: 'db-one', detail: { cause: 'api', ms: [1, 2] } }, 'compute started');`;
  const { stdout } = await execFileAsync(process.execPath, ['--import', TS_LOADER, '--input-type=module', '-e', script], { cwd: repoRoot });
  return stdout.trim();
}

t.test('json by default when stdout is not a terminal: one object a line, the password redacted', async (t) => {
  const line = await logLine(undefined);
  const entry = JSON.parse(line);
  t.equal(entry.msg, 'compute started');
  t.equal(entry.level, 30);
  t.equal(entry.database, 'db-one');
  t.equal(entry.password, '[redacted]');
});

t.test('PGFLEET_LOG_FORMAT=pretty: one readable line per event, not JSON, the password redacted', async (t) => {
  const line = await logLine('pretty');
  t.equal(line.split('\n').length, 1, 'one line, nested fields included');
  t.match(line, /"detail":\{"cause":"api","ms":\[1,2\]\}/);
  t.throws(() => JSON.parse(line), 'not JSON');
  t.match(line, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO.*: compute started/);
  t.match(line, /"database":"db-one"/);
  t.notMatch(line, /s3cret-pw/);
  t.notMatch(line, /\u001b\[/, 'no colour codes when stdout is not a terminal');
});

t.test('not root: the start says which isolation is lost; root: says what keeps tenants apart', async (t) => {
  const lines: { level: number; msg: string }[] = [];
  const capture = new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } });
  const log = pino({ level: 'info' }, capture);
  announceIsolation(log, false);
  t.equal(lines.length, 1);
  t.equal(lines[0]!.level, 40, 'a warning');
  t.match(lines[0]!.msg, /OS isolation is lost.*one OS user.*read every other database's files and the catalog's/);
  announceIsolation(log, true);
  t.equal(lines[1]!.level, 30);
  t.match(lines[1]!.msg, /each database run as OS users of their own/);
});
