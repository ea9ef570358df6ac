/** The pooler's hand-written pieces: message splitting, the SQL scan, the statement cache, startup settings. */
import t from 'tap';
import { FrameSplitter } from '../proxy/protocol/frame-splitter.ts';
import { StatementCache, serverStatementName } from '../proxy/pool/prepared.ts';
import { queryMessage } from '../proxy/protocol/extended-query.ts';
import { applySettingsSql, fingerprint, startupSettings } from '../proxy/pool/session-settings.ts';
import { scanSql, splitStatements } from '../proxy/pool/sql-scan.ts';

t.test('FrameSplitter: whole messages from any cut of the stream', async (t) => {
  const stream = Buffer.concat([queryMessage('SELECT 1'), queryMessage('x'.repeat(10_000)), queryMessage('')]);
  for (const cut of [1, 3, 5, 7, 100, 4096, stream.length]) {
    const splitter = new FrameSplitter(1 << 20);
    const frames: Buffer[] = [];
    for (let at = 0; at < stream.length; at += cut) frames.push(...splitter.split(stream.subarray(at, at + cut)));
    t.same(frames.map((f) => f.length), [14, 10_006, 6], `cut every ${cut} bytes`);
    t.equal(splitter.pending, 0);
  }
  const splitter = new FrameSplitter(100);
  t.throws(() => splitter.split(queryMessage('y'.repeat(200))), { sqlstate: '08P01', message: /invalid message length: 205/ }, 'an oversized message is a protocol violation');
  t.throws(() => new FrameSplitter(100).split(Buffer.from([0x51, 0, 0, 0, 2])), { sqlstate: '08P01', message: /invalid message length: 2/ }, 'a length below 4 too');
});

t.test('scanSql: session features, settings, local commands; literals and comments are not code', async (t) => {
  t.equal(scanSql('SELECT * FROM t WHERE id = $1'), undefined, 'plain SQL is not scanned further');
  t.same(scanSql('UPDATE t SET a = 1')?.touchesSession, false, 'UPDATE … SET is not a setting');
  t.equal(scanSql('SET search_path TO x')?.touchesSession, true);
  t.equal(scanSql('set local work_mem = 1')?.touchesSession, false, 'SET LOCAL ends with the transaction');
  t.equal(scanSql(`SELECT set_config('a.b', 'c', false)`)?.touchesSession, true);
  t.equal(scanSql('RESET ALL')?.touchesSession, true);
  t.equal(scanSql('LISTEN jobs')?.refused, 'LISTEN');
  t.equal(scanSql(`SELECT 'LISTEN jobs'`)?.refused, undefined, 'a string literal is not a statement');
  t.equal(scanSql(`SELECT 1; -- LISTEN x\nSELECT 2`)?.refused, undefined, 'nor a comment');
  t.equal(scanSql(`SELECT $$ ; LISTEN x $$`)?.refused, undefined, 'nor a dollar-quoted string');
  t.equal(scanSql(`SELECT 1; /* a /* nested */ LISTEN */ SELECT 2`)?.refused, undefined, 'nor a nested comment');
  t.match(scanSql('CREATE TEMP TABLE x (a int)')?.refused, /temporary/);
  t.equal(scanSql('CREATE TEMPORARY TABLE x (a int) ON COMMIT DROP')?.refused, undefined);
  t.match(scanSql('SELECT 1 INTO TEMP y')?.refused, /temporary/);
  t.match(scanSql('select pg_advisory_lock(1)')?.refused, /advisory/);
  t.match(scanSql('select pg_try_advisory_lock_shared (1)')?.refused, /advisory/);
  t.equal(scanSql('select pg_advisory_xact_lock(1)')?.refused, undefined);
  t.match(scanSql('DECLARE c CURSOR WITH HOLD FOR SELECT 1')?.refused, /WITH HOLD/);
  t.equal(scanSql('DECLARE c CURSOR FOR SELECT 1')?.refused, undefined);
  t.match(scanSql('PREPARE p AS SELECT 1')?.refused, /PREPARE/);
  t.same(scanSql('DEALLOCATE ALL')?.local, { kind: 'deallocate-all' });
  t.same(scanSql('deallocate prepare "S_1"')?.local, { kind: 'deallocate', name: 'S_1' });
  t.same(scanSql('DEALLOCATE Foo;')?.local, { kind: 'deallocate', name: 'foo' });
  t.same(scanSql('DISCARD ALL')?.local, { kind: 'discard-all' });
  t.equal(scanSql('DISCARD ALL; SELECT 1')?.local, undefined, 'only a lone command is answered by the proxy');
  t.same(splitStatements(`SELECT 'a;b'; SELECT "x;y"; SELECT E'\\';'`), [`SELECT ''`, `SELECT "x;y"`, `SELECT E''`], 'semicolons in literals and quoted names do not split');
});

t.test('StatementCache: least recently used names go first, within capacity', async (t) => {
  const cache = new StatementCache(2);
  t.same(cache.add('a'), []);
  t.same(cache.add('b'), []);
  t.ok(cache.use('a'), 'a is used again');
  t.same(cache.add('c'), ['b'], 'b was used least recently');
  t.notOk(cache.use('b'));
  cache.replaceWith(['x']);
  t.equal(cache.size, 1);
  t.ok(cache.use('x'));
  const rest = Buffer.from('SELECT 1\0\0\0');
  t.equal(serverStatementName(rest), serverStatementName(Buffer.from(rest)), 'the same query and types, the same name');
  t.not(serverStatementName(rest), serverStatementName(Buffer.from('SELECT 2\0\0\0')));
});

t.test('startup settings: parameters and options -c, one query to apply them', async (t) => {
  const settings = startupSettings(new Map([['user', 'u'], ['database', 'd'], ['application_name', 'app'], ['TimeZone', 'UTC']]),
    '-c search_path=a,b --statement-timeout=5s -c application_name=my\\ app');
  t.same([...settings], [['application_name', 'my app'], ['timezone', 'UTC'], ['search_path', 'a,b'], ['statement_timeout', '5s']],
    'names in lower case, -c and -- forms, escaped spaces, options after parameters');
  t.equal(fingerprint(new Map([['b', '1'], ['a', '2']])), fingerprint(new Map([['a', '2'], ['b', '1']])), 'order does not matter');
  t.equal(applySettingsSql(new Map([['timezone', "it's"]])), `RESET ALL; SELECT set_config('timezone', 'it''s', false)`);
  t.throws(() => startupSettings(new Map(), '-B 100'), { sqlstate: '0A000', message: /only -c name=value/ }, 'other postgres switches are refused');
});
