/**
 * The extended-protocol messages the pooler reads, rewrites or makes up: statement names in
 * Parse/Bind/Describe/Close, and the answers it gives in the backend's place.
 */
import { MSG } from './codes.ts';
import { cstring, int16, int32, message } from './messages.ts';
import { readCString } from './frame-splitter.ts';


/** The text of a Query message. */
export const queryText = (frame: Buffer) => frame.toString('utf8', 5, frame.length - 1);

export const queryMessage = (sql: string) => message(MSG.query, cstring(sql));
export const syncMessage = () => message(MSG.sync, Buffer.alloc(0));
export const copyFailMessage = (reason: string) => message(MSG.copyFail, cstring(reason));
export const parseComplete = () => message(MSG.parseComplete, Buffer.alloc(0));
export const closeComplete = () => message(MSG.closeComplete, Buffer.alloc(0));
export const commandComplete = (tag: string) => message(MSG.commandComplete, cstring(tag));

/** Parse: statement name, then the query and its parameter types exactly as the client sent them. */
export interface ParseFields {
  name: string;
  query: string;
  /** Everything after the name: query, parameter count and types. */
  rest: Buffer;
}

export function readParse(frame: Buffer): ParseFields {
  const name = readCString(frame, 5);
  const query = readCString(frame, name.next);
  return { name: name.value, query: query.value, rest: frame.subarray(name.next) };
}

export const parseMessage = (name: string, rest: Buffer) => message(MSG.parse, Buffer.concat([cstring(name), rest]));
/** A Parse of SQL without parameters. */
export const parsePlain = (name: string, sql: string) => parseMessage(name, Buffer.concat([cstring(sql), int16(0)]));

/** Bind: which statement it binds, and where that name sits in the frame. */
export function readBindStatement(frame: Buffer): { name: string; start: number; end: number } {
  const portal = readCString(frame, 5);
  const statement = readCString(frame, portal.next);
  return { name: statement.value, start: portal.next, end: statement.next };
}

/** The same message with the statement name at [start, end) replaced. */
export function renameIn(frame: Buffer, start: number, end: number, name: string): Buffer {
  const body = Buffer.concat([frame.subarray(5, start), cstring(name), frame.subarray(end)]);
  return message(frame[0]!, body);
}

/** Describe or Close: what it names (TARGET.statement or TARGET.portal), and the name. */
export function readTarget(frame: Buffer): { kind: number; name: string } {
  return { kind: frame[5]!, name: readCString(frame, 6).value };
}

export const targetMessage = (type: number, kind: number, name: string) =>
  message(type, Buffer.concat([Buffer.from([kind]), cstring(name)]));

/** Bind of the unnamed statement to the unnamed portal, no parameters; Execute of it. */
export const bindPlain = () => message(MSG.bind, Buffer.concat([cstring(''), cstring(''), int16(0), int16(0), int16(0)]));
export const executePlain = () => message(MSG.execute, Buffer.concat([cstring(''), int32(0)]));

/** The text fields of a DataRow (NULL as undefined). */
export function readDataRowTexts(frame: Buffer): (string | undefined)[] {
  const count = frame.readUInt16BE(5);
  const out: (string | undefined)[] = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    const length = frame.readInt32BE(at);
    at += 4;
    if (length < 0) {
      out.push(undefined);
    } else {
      out.push(frame.toString('utf8', at, at + length));
      at += length;
    }
  }
  return out;
}
