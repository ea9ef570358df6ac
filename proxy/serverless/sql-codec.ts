/**
 * The two heavy steps of `POST /sql`, as pure functions of bytes: a JSON body becomes the
 * Postgres messages of its statements, and the compute's answer bytes become the JSON answer.
 * They run inline for small requests and in a worker thread for big ones (sql-codec-pool.ts),
 * so that no request holds the event loop while it is parsed or its answer is built.
 */
import { serialize } from 'pg-protocol';
import type { BackendMessage, CommandCompleteMessage, DataRowMessage, RowDescriptionMessage } from 'pg-protocol/dist/messages';
import { Parser } from 'pg-protocol/dist/parser';
import { type Statement, parseBody } from './sql-request.ts';
import { type StatementResult, queryAnswer } from './sql-result.ts';

/** A request as it goes to the compute: all its messages before one Sync. */
export interface EncodedRequest {
  wire: Buffer;
  kind: 'single' | 'batch';
  /** Each statement's own arrayMode, if it set one. */
  arrayModes: (boolean | undefined)[];
}

export interface EncodeOptions {
  /** The BEGIN of a batch, with its options. */
  begin: string;
  maxStatements: number;
}

export interface DecodeOptions {
  arrayMode: boolean;
  rawText: boolean;
}

function messagesOf(statement: Statement): Buffer[] {
  return [
    serialize.parse({ text: statement.text }),
    serialize.bind({ values: statement.params }),
    serialize.describe({ type: 'P' }),
    serialize.execute({ rows: 0 }),
  ];
}

/** The body as wire messages: one statement, or a batch between BEGIN and COMMIT. Throws HttpError for a bad body. */
export function encodeRequest(body: Uint8Array, opts: EncodeOptions): EncodedRequest {
  const request = parseBody(Buffer.from(body.buffer, body.byteOffset, body.byteLength), opts.maxStatements);
  const statements = request.kind === 'single' ? [request.statement] : request.statements;
  const control = (text: string): Statement => ({ text, params: [], arrayMode: undefined });
  const all = request.kind === 'single' ? statements : [control(opts.begin), ...statements, control('COMMIT')];
  return { wire: Buffer.concat([...all.flatMap(messagesOf), serialize.sync()]), kind: request.kind, arrayModes: statements.map((s) => s.arrayMode) };
}

/** The compute's answer (every byte up to ReadyForQuery, without errors) as the JSON the driver reads. */
export function decodeAnswer(raw: Uint8Array, request: Omit<EncodedRequest, 'wire'>, opts: DecodeOptions): Buffer {
  const results: StatementResult[] = [];
  let current: StatementResult = { fields: [], rows: [], tag: '' };
  new Parser().parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), (m: BackendMessage) => {
    if (m.name === 'rowDescription') current.fields = (m as RowDescriptionMessage).fields;
    else if (m.name === 'dataRow') current.rows.push((m as DataRowMessage).fields as (string | null)[]);
    else if (m.name === 'commandComplete' || m.name === 'emptyQuery') {
      if (m.name === 'commandComplete') current.tag = (m as CommandCompleteMessage).text;
      results.push(current);
      current = { fields: [], rows: [], tag: '' };
    }
  });
  const answer = (result: StatementResult | undefined, i: number) =>
    queryAnswer(result ?? { fields: [], rows: [], tag: '' }, request.arrayModes[i] ?? opts.arrayMode, opts.rawText);
  const json = request.kind === 'single'
    ? answer(results[0], 0)
    : { results: request.arrayModes.map((_, i) => answer(results[i + 1], i)) }; // results[0] is the BEGIN's
  return Buffer.from(JSON.stringify(json));
}
