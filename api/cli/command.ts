/** What every `pgfleet` command is made of: its help, the API client it calls, how it prints. */
import { CliError } from '../cli-error.ts';

export interface Client {
  call(method: string, path: string, body?: unknown): Promise<any>;
  /** GET without a key (readiness). */
  open(path: string): Promise<{ status: number; body: any }>;
}

/** Option values as parsed (strings and booleans). */
export type Values = Record<string, string | boolean | undefined>;

export interface Context {
  api: Client;
  /** Positional arguments after the command's own words. */
  args: string[];
  v: Values;
  out(line: string): void;
}

export interface Command {
  /** Its words: `db create`, `events`. */
  name: string;
  /** Arguments and options: `<database id> --name <name> [--parent <branch>]`. */
  usage: string;
  summary: string;
  /** More lines for `pgfleet <command> --help`. */
  details?: string;
  /** The exit code (0 when nothing is returned). */
  run(ctx: Context): Promise<number | void>;
}

export const cliVersion = (version: string) => `pgfleet-cli/${version}`;

export function client(url: string, key: string | undefined, userAgent: string): Client {
  const request = async (method: string, path: string, body: unknown, withKey: boolean) => {
    if (withKey && !key) throw new CliError('no API key: pass --key or set PGFLEET_API_KEY');
    const headers: Record<string, string> = { 'user-agent': userAgent, 'x-pgfleet-client': userAgent };
    if (withKey) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(new URL(path, url), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new CliError(`cannot reach the API at ${url}: ${(err as Error).cause ?? (err as Error).message}`);
    }
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, text };
  };
  return {
    async call(method, path, body) {
      const { status, body: answer, text } = await request(method, path, body, true);
      if (status >= 400) throw new CliError(`${status} ${answer?.error?.code ?? ''}: ${answer?.error?.message ?? text}`);
      return answer;
    },
    open: (path) => request('GET', path, undefined, false),
  };
}

/** The whole answer as JSON, one field of it (--field), or the lines a person reads. */
export function print(ctx: Context, answer: unknown, human: () => string[]): void {
  if (typeof ctx.v.field === 'string') {
    const value = (answer as Record<string, unknown> | undefined)?.[ctx.v.field];
    if (value === undefined) throw new CliError(`--field: the answer has no field "${ctx.v.field}"`);
    ctx.out(typeof value === 'string' ? value : JSON.stringify(value));
  } else if (ctx.v.json) ctx.out(JSON.stringify(answer));
  else for (const line of human()) ctx.out(line);
}

/** One item of a list: a JSON line each with --json, else its line. */
export function printItem(ctx: Context, item: unknown, line: string): void {
  ctx.out(ctx.v.json ? JSON.stringify(item) : line);
}

/** Every `key: value` of an answer, for `show` commands. */
export const fields = (answer: Record<string, unknown>): string[] =>
  Object.entries(answer).map(([k, v]) => `${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`);

/** The n-th positional, or a CliError naming what is missing. */
export function arg(ctx: Context, n: number, what: string, command: string): string {
  const value = ctx.args[n];
  if (!value) throw new CliError(`${command} needs ${what}`);
  return value;
}

export function need(ctx: Context, option: string, command: string, what = `<${option}>`): string {
  const value = ctx.v[option];
  if (typeof value !== 'string' || value === '') throw new CliError(`${command} needs --${option} ${what}`);
  return value;
}

/** A whole number option, or undefined when not given. */
export function integer(ctx: Context, option: string): number | undefined {
  const value = ctx.v[option];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value)) throw new CliError(`--${option} needs a whole number`);
  return Number(value);
}

/** Pages through a list route (`next_cursor`), printing each item. */
export async function paginate(ctx: Context, path: string, key: string, each: (item: any) => void): Promise<void> {
  let cursor: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page: any = await ctx.api.call('GET', cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    page[key].forEach(each);
    cursor = page.next_cursor;
  } while (cursor);
}

export const enc = encodeURIComponent;

/** --label key=value[,key=value]: a labels map, or undefined when not given. */
export function labelsOf(ctx: Context): Record<string, string> | undefined {
  if (typeof ctx.v.label !== 'string') return undefined;
  return Object.fromEntries(ctx.v.label.split(',').map((pair) => {
    const at = pair.indexOf('=');
    if (at < 1) throw new CliError('--label needs key=value[,key=value]');
    return [pair.slice(0, at), pair.slice(at + 1)];
  }));
}
