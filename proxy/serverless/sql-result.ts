/**
 * The JSON answer of `POST /sql`, in the shape Neon's serverless driver reads: field metadata
 * (it picks each column's parser from `dataTypeID`), rows as arrays or objects, the command and
 * its row count; errors with the Postgres ErrorResponse fields.
 */
import type { DatabaseError, Field } from 'pg-protocol/dist/messages';

/** One statement's result as the compute sent it. */
export interface StatementResult {
  fields: Field[];
  rows: (string | null)[][];
  /** The command tag (`SELECT 3`, `INSERT 0 1`); empty for an empty query. */
  tag: string;
}

export interface QueryAnswer {
  fields: { name: string; dataTypeID: number; tableID: number; columnID: number; dataTypeSize: number; dataTypeModifier: number; format: 'text' }[];
  rows: unknown[];
  command: string;
  rowCount: number | null;
  rowAsArray: boolean;
}

export function queryAnswer(result: StatementResult, arrayMode: boolean, rawText: boolean): QueryAnswer {
  const { fields } = result;
  const convert = rawText ? undefined : fields.map((f) => jsonValue(f.dataTypeID));
  const value = (v: string | null, i: number) => (v === null || !convert ? v : convert[i]!(v));
  const words = result.tag.split(' ');
  const last = words.length > 1 ? Number(words.at(-1)) : NaN;
  return {
    fields: fields.map((f) => ({
      name: f.name, dataTypeID: f.dataTypeID, tableID: f.tableID, columnID: f.columnID,
      dataTypeSize: f.dataTypeSize, dataTypeModifier: f.dataTypeModifier, format: 'text',
    })),
    rows: result.rows.map((row) => (arrayMode
      ? row.map(value)
      : Object.fromEntries(row.map((v, i) => [fields[i]!.name, value(v, i)])))),
    command: words[0] ?? '',
    rowCount: Number.isInteger(last) ? last : null,
    rowAsArray: arrayMode,
  };
}

const NUMBERS = new Set([21, 23, 700, 701]); // int2, int4, float4, float8
const JSON_TYPES = new Set([114, 3802]); // json, jsonb
const BOOL = 16;

/** Without Neon-Raw-Text-Output: numbers, booleans and JSON as JSON; everything else stays text. */
function jsonValue(typeId: number): (text: string) => unknown {
  if (NUMBERS.has(typeId)) return (t) => (Number.isFinite(Number(t)) ? Number(t) : t);
  if (typeId === BOOL) return (t) => t === 't';
  if (JSON_TYPES.has(typeId)) return (t) => JSON.parse(t);
  return (t) => t;
}

const ERROR_FIELDS = [
  'severity', 'code', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery', 'where',
  'schema', 'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine',
] as const;

/** A Postgres error as the driver turns it into a NeonDbError: message plus the ErrorResponse fields. */
export function errorAnswer(e: DatabaseError): Record<string, string> {
  const out: Record<string, string> = { message: e.message };
  for (const k of ERROR_FIELDS) if (e[k] !== undefined) out[k] = e[k]!;
  return out;
}
