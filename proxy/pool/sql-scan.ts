/**
 * What a pooled client's SQL means for session state: features that would outlive the
 * transaction on a shared backend (refused), commands that may change settings or prepared
 * statements (the backend is re-read before it goes back to the pool), and the few commands
 * the proxy answers itself. Written by hand: only statement boundaries and leading keywords
 * matter here, and a full SQL parser per query would cost more than the query.
 */

export type LocalCommand = { kind: 'deallocate-all' } | { kind: 'deallocate'; name: string } | { kind: 'discard-all' };

export interface SqlScan {
  /** A session feature the pooled connection refuses: its name for the error. */
  refused?: string;
  /** May change session settings or prepared statements (SET, RESET, set_config, DISCARD, DEALLOCATE). */
  touchesSession: boolean;
  /** A lone command the proxy answers without a backend. */
  local?: LocalCommand;
}

// Cheap first look: text without any of these words needs no scan.
const INTERESTING = /set|listen|hold|advisory|temp|prepare|discard|deallocate/i;

/**
 * Masks string literals, quoted identifiers and comments with spaces, so that keywords are
 * only found in code, and splits at top-level semicolons.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let current = '';
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === ';') {
      out.push(current);
      current = '';
      i++;
    } else if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end;
      current += ' ';
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') { depth++; i += 2; } else if (sql[i] === '*' && sql[i + 1] === '/') { depth--; i += 2; } else i++;
      }
      current += ' ';
    } else if (c === "'") {
      const escapes = /[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '');
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") break;
        else i++;
      }
      i++;
      current += "''";
    } else if (c === '"') {
      const start = i;
      i++;
      while (i < n && !(sql[i] === '"' && sql[i + 1] !== '"')) i += sql[i] === '"' ? 2 : 1;
      i++;
      current += sql.slice(start, i);
    } else if (c === '$' && !/[\w$]/.test(sql[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (!tag) {
        current += c;
        i++;
        continue;
      }
      const end = sql.indexOf(tag[0], i + tag[0].length);
      i = end < 0 ? n : end + tag[0].length;
      current += "''";
    } else {
      current += c;
      i++;
    }
  }
  out.push(current);
  return out.map((s) => s.trim().replace(/\s+/g, ' ')).filter((s) => s !== '');
}

const unquote = (name: string) => (name.startsWith('"') ? name.slice(1, -1).replace(/""/g, '"') : name.toLowerCase());

function refusal(statement: string): string | undefined {
  if (/^listen\b/.test(statement)) return 'LISTEN';
  if (/^declare\b.*\bwith hold\b/.test(statement)) return 'a cursor WITH HOLD';
  if (/^prepare\b/.test(statement)) return 'SQL PREPARE (protocol-level prepared statements work)';
  const temp = /^create (?:(?:global|local) )?(?:temp|temporary) (?:unlogged )?(\w+)/.exec(statement);
  if (temp && !(temp[1] === 'table' && /\bon commit drop\b/.test(statement))) return 'a temporary object that outlives its transaction (use ON COMMIT DROP)';
  if (/\binto (?:temp|temporary)\b/.test(statement)) return 'SELECT INTO a temporary table';
  if (/\bpg_(?:try_)?advisory_lock(?:_shared)? ?\(/.test(statement)) return 'a session-level advisory lock (pg_advisory_xact_lock works)';
  return undefined;
}

function touchesSession(statement: string): boolean {
  if (/^(?:set|reset)\b/.test(statement)) return !/^set (?:local|transaction|constraints)\b/.test(statement);
  return /^(?:discard|deallocate)\b/.test(statement) || /\bset_config ?\(/.test(statement);
}

function local(lowered: string, original: string): LocalCommand | undefined {
  if (/^deallocate (?:prepare )?all$/.test(lowered)) return { kind: 'deallocate-all' };
  if (/^discard all$/.test(lowered)) return { kind: 'discard-all' };
  const m = /^deallocate (?:prepare )?("(?:[^"]|"")+"|[a-z_][\w$]*)$/i.exec(original);
  return m ? { kind: 'deallocate', name: unquote(m[1]!) } : undefined;
}

/** Undefined when the SQL is plain (the common case, decided by one regular expression). */
export function scanSql(sql: string): SqlScan | undefined {
  if (!INTERESTING.test(sql)) return undefined;
  const statements = splitStatements(sql);
  const lowered = statements.map((s) => s.toLowerCase());
  const scan: SqlScan = { touchesSession: false };
  for (const s of lowered) {
    scan.refused ??= refusal(s);
    scan.touchesSession ||= touchesSession(s);
  }
  if (statements.length === 1) scan.local = local(lowered[0]!, statements[0]!);
  return scan;
}
