/**
 * A pooled client's session settings: its startup parameters (application_name, TimeZone,
 * `options=-c search_path=…`, …) and what its own SET/RESET left behind. They are put on
 * whichever backend serves it, only when that backend's differ.
 */
import { ConnectionRefused } from '../errors.ts';
import { NOT_SETTINGS } from '../protocol/startup.ts';

/** Setting name (lower case) → value, as `pg_settings.setting` shows it. */
export type Settings = Map<string, string>;


/** `-c name=value` and `--name=value` from `options` (what is left after pgfleet's own). */
function optionSettings(options: string, into: Settings): void {
  const tokens = (options.match(/(?:\\.|[^\s\\])+/gs) ?? []).map((t) => t.replace(/\\(.)/gs, '$1'));
  for (let i = 0; i < tokens.length; i++) {
    let token = tokens[i]!;
    if (token === '-c') token = tokens[++i] ?? '';
    else if (token.startsWith('-c')) token = token.slice(2);
    else if (token.startsWith('--')) token = token.slice(2);
    else throw new ConnectionRefused(`options "${token}" is not supported on a pooled connection (only -c name=value)`, '0A000');
    const eq = token.indexOf('=');
    if (eq <= 0) throw new ConnectionRefused(`invalid option "${token}": expected name=value`, '22023');
    into.set(token.slice(0, eq).toLowerCase().replace(/-/g, '_'), token.slice(eq + 1));
  }
}

/** The settings a client's startup packet asks for. */
export function startupSettings(params: Map<string, string>, options: string): Settings {
  const out: Settings = new Map();
  for (const [k, v] of params) if (!NOT_SETTINGS.has(k)) out.set(k.toLowerCase(), v);
  if (options) optionSettings(options, out);
  return out;
}

/** A stable text of a set of settings, to compare a client's with a backend's cheaply. */
export function fingerprint(settings: Settings): string {
  if (settings.size === 0) return '';
  return JSON.stringify([...settings].sort(([a], [b]) => (a < b ? -1 : 1)));
}

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * One simple query that brings a backend to exactly these settings: everything back to the
 * defaults (unless it was just reset), then each setting. It runs as one implicit transaction,
 * so a bad value leaves the backend as it was.
 */
export function applySettingsSql(settings: Settings, reset = true): string {
  if (settings.size === 0) return 'RESET ALL';
  const calls = [...settings].map(([k, v]) => `set_config(${literal(k)}, ${literal(v)}, false)`);
  return `${reset ? 'RESET ALL; ' : ''}SELECT ${calls.join(', ')}`;
}

/**
 * Reads back what a client's transaction may have changed: session-level settings and the
 * backend's prepared statements. Rows: ('s', name, setting) and ('p', name, NULL).
 */
export const READ_SESSION_SQL =
  `SELECT 's', lower(name), setting FROM pg_settings WHERE source = 'session' ` +
  `UNION ALL SELECT 'p', name, NULL FROM pg_prepared_statements`;
