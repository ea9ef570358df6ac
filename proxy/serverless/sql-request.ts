/**
 * What a `POST /sql` asks for, read the way Neon's serverless driver writes it: the database in
 * the `Neon-Connection-String` header, flags in `Neon-*` headers, and a JSON body with one query
 * (`{query, params}`) or a batch (`{queries: [...]}`).
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { pgfleetOptions } from '../endpoint.ts';
import { HttpError } from './http-error.ts';

export const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** The database and credentials the connection string names. */
export interface SqlTarget {
  role: string;
  password: string;
  database: string;
  /** Host of the connection string (its first label names the endpoint). */
  host: string;
  /** `endpoint=` from its `options` parameter. */
  optionsEndpoint: string | undefined;
}

export function parseConnectionString(header: string | string[] | undefined): SqlTarget {
  if (typeof header !== 'string' || header === '') {
    throw new HttpError(400, 'missing Neon-Connection-String header: give postgresql://role:password@<endpoint host>/<database>');
  }
  let url: URL;
  try {
    url = new URL(header);
  } catch {
    throw new HttpError(400, 'Neon-Connection-String is not a URL: give postgresql://role:password@<endpoint host>/<database>');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new HttpError(400, 'Neon-Connection-String must start with postgresql:// or postgres://');
  }
  const decode = (part: string, what: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw new HttpError(400, `Neon-Connection-String: the ${what} is not validly percent-encoded`);
    }
  };
  const role = decode(url.username, 'user');
  const database = decode(url.pathname.replace(/^\//, ''), 'database name');
  if (!role) throw new HttpError(400, 'Neon-Connection-String names no user');
  if (!database) throw new HttpError(400, 'Neon-Connection-String names no database');
  return {
    role,
    password: decode(url.password, 'password'),
    database,
    host: url.hostname,
    optionsEndpoint: pgfleetOptions(url.searchParams.get('options') ?? undefined).endpoint,
  };
}

const ISOLATION_LEVELS: Record<string, string> = {
  ReadUncommitted: 'READ UNCOMMITTED',
  ReadCommitted: 'READ COMMITTED',
  RepeatableRead: 'REPEATABLE READ',
  Serializable: 'SERIALIZABLE',
};

export interface SqlFlags {
  /** Values as Postgres text (the driver parses them itself), else converted to JSON types. */
  rawText: boolean;
  /** Rows as arrays, else objects keyed by column name. */
  arrayMode: boolean;
  /** The BEGIN of a batch, with its options. */
  begin: string;
  /** Neon-Batch-* headers, echoed in the answer of a batch. */
  batchHeaders: Record<string, string>;
}

const flag = (headers: IncomingHttpHeaders, name: string) => headers[name] === 'true';

function batchBoolean(headers: IncomingHttpHeaders, name: string): boolean | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  if (v === 'true' || v === 'false') return v === 'true';
  throw new HttpError(400, `${name} must be true or false`);
}

export function parseFlags(headers: IncomingHttpHeaders): SqlFlags {
  const batchHeaders: Record<string, string> = {};
  let begin = 'BEGIN';
  const isolation = headers['neon-batch-isolation-level'];
  if (isolation !== undefined) {
    const level = typeof isolation === 'string' ? ISOLATION_LEVELS[isolation] : undefined;
    if (!level) throw new HttpError(400, `invalid isolation level: Neon-Batch-Isolation-Level must be one of ${Object.keys(ISOLATION_LEVELS).join(', ')}`);
    begin += ` ISOLATION LEVEL ${level}`;
    batchHeaders['Neon-Batch-Isolation-Level'] = isolation as string;
  }
  const readOnly = batchBoolean(headers, 'neon-batch-read-only');
  if (readOnly !== undefined) {
    begin += readOnly ? ' READ ONLY' : ' READ WRITE';
    batchHeaders['Neon-Batch-Read-Only'] = String(readOnly);
  }
  const deferrable = batchBoolean(headers, 'neon-batch-deferrable');
  if (deferrable !== undefined) {
    begin += deferrable ? ' DEFERRABLE' : ' NOT DEFERRABLE';
    batchHeaders['Neon-Batch-Deferrable'] = String(deferrable);
  }
  return { rawText: flag(headers, 'neon-raw-text-output'), arrayMode: flag(headers, 'neon-array-mode'), begin, batchHeaders };
}

/** One statement and its parameters, already as Postgres text (null = SQL NULL). */
export interface Statement {
  text: string;
  params: (string | null)[];
  arrayMode: boolean | undefined;
}

export type SqlBody = { kind: 'single'; statement: Statement } | { kind: 'batch'; statements: Statement[] };

/** A body declared over MAX_BODY_BYTES is refused (413) before anything else. */
export function checkDeclaredLength(req: IncomingMessage): void {
  if (Number(req.headers['content-length']) > MAX_BODY_BYTES) throw new HttpError(413, `the request body is over ${MAX_BODY_BYTES} bytes`, '54000');
}

/** Reads the body, refusing past MAX_BODY_BYTES (413). */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners('data');
        reject(new HttpError(413, `the request body is over ${MAX_BODY_BYTES} bytes`, '54000'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('aborted', () => reject(new HttpError(400, 'the request was aborted')));
  });
}

/** Nested arrays a parameter may hold: Postgres's own limit on array dimensions (MAXDIM). */
const MAX_ARRAY_DEPTH = 6;

export function parseBody(body: Buffer, maxStatements: number): SqlBody {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'the body is not JSON: send {"query": "...", "params": [...]} or {"queries": [...]}', '22P02');
  }
  if (!isObject(json)) throw new HttpError(400, 'the body must be a JSON object', '22023');
  if ('queries' in json) {
    if (!Array.isArray(json.queries)) throw new HttpError(400, 'queries must be an array', '22023');
    if (json.queries.length > maxStatements) {
      throw new HttpError(400, `too many statements in one batch: ${json.queries.length} (PGFLEET_SQL_MAX_STATEMENTS is ${maxStatements})`, '54000');
    }
    return { kind: 'batch', statements: json.queries.map((q, i) => statementOf(q, `queries[${i}]`)) };
  }
  return { kind: 'single', statement: statementOf(json, 'the body') };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function statementOf(v: unknown, where: string): Statement {
  if (!isObject(v) || typeof v.query !== 'string') throw new HttpError(400, `${where}: query must be a string`, '22023');
  if (v.params !== undefined && v.params !== null && !Array.isArray(v.params)) throw new HttpError(400, `${where}: params must be an array`, '22023');
  if (v.arrayMode !== undefined && typeof v.arrayMode !== 'boolean') throw new HttpError(400, `${where}: arrayMode must be true or false`, '22023');
  const params = (v.params ?? []) as unknown[];
  return { text: v.query, params: params.map((p, i) => pgText(p, `${where}: params[${i}]`)), arrayMode: v.arrayMode as boolean | undefined };
}

/** A JSON parameter as Postgres text: strings as they are, arrays as array literals, the rest as JSON. */
export function pgText(value: unknown, where = 'params'): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return arrayLiteral(value, 1, where);
  return jsonText(value, where);
}

/** A JSON value as text; one nested past the stack's depth is the client's error, not a crash. */
function jsonText(value: unknown, where: string): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (err instanceof RangeError) throw new HttpError(400, `${where}: nested too deeply`, '54000');
    throw err;
  }
}

function arrayLiteral(values: unknown[], depth: number, where: string): string {
  if (depth > MAX_ARRAY_DEPTH) throw new HttpError(400, `${where}: arrays nested more than ${MAX_ARRAY_DEPTH} deep (Postgres arrays have at most ${MAX_ARRAY_DEPTH} dimensions)`, '54000');
  const items = values.map((v) => {
    if (v === null || v === undefined) return 'NULL';
    if (Array.isArray(v)) return arrayLiteral(v, depth + 1, where);
    const text = typeof v === 'string' ? v : jsonText(v, where);
    return `"${text.replace(/[\\"]/g, '\\$&')}"`;
  });
  return `{${items.join(',')}}`;
}
