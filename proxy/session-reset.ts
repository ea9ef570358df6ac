/**
 * What makes a kept backend fit for its next client. When its client leaves: DISCARD ALL
 * (temporary tables, settings and SET ROLE / SESSION AUTHORIZATION, prepared statements, cursors,
 * advisory locks, LISTEN, plans, sequence state). When the next client takes it: STARTUP_PROBE,
 * which it also answered as it started. A backend applies role and database settings (ALTER ROLE /
 * DATABASE … SET) at its start only, and only at its start is it refused for a role that may not
 * log in or a database that takes no connections; one whose answer changed since would serve its
 * next client as no new backend would, and goes instead.
 */
import { MSG, TX_IDLE } from './protocol/codes.ts';
import { queryMessage } from './protocol/extended-query.ts';
import { readCString } from './protocol/frame-splitter.ts';
import type { PacketReader } from './protocol/packet-reader.ts';
import type { ServerParameters } from './protocol/server-parameters.ts';

/** What a backend takes in at its start only, as one value (compared, never parsed). */
export const STARTUP_PROBE = queryMessage(`SELECT pg_catalog.md5(pg_catalog.concat_ws(' ',
  (SELECT pg_catalog.array_agg(s.* ORDER BY s.setdatabase, s.setrole)::pg_catalog.text FROM pg_catalog.pg_db_role_setting s),
  (SELECT r.rolcanlogin || ' ' || r.rolconnlimit || ' ' || COALESCE(r.rolvaliduntil::pg_catalog.text, '') FROM pg_catalog.pg_roles r WHERE r.rolname = session_user),
  (SELECT d.datallowconn || ' ' || d.datconnlimit || ' ' || pg_catalog.has_database_privilege(session_user, d.oid, 'CONNECT')
     FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())))`);
const DISCARD_ALL = queryMessage('DISCARD ALL');


/** The answers to `queries` simple queries, up to their last ReadyForQuery. */
export interface Answers {
  /** The command tags, in order. */
  tags: string[];
  /** The first column of the last DataRow (null for SQL NULL), if any. */
  value: string | null | undefined;
  /** An ErrorResponse came. */
  failed: boolean;
  /** The transaction status of the last ReadyForQuery. */
  status: number;
}

/**
 * Reads the answers of `queries` simple queries; ParameterStatus updates `parameters`; notices
 * and notifications (of what ran before the reset) are dropped.
 */
export async function readAnswers(reader: PacketReader, queries: number, parameters: ServerParameters): Promise<Answers> {
  const answers: Answers = { tags: [], value: undefined, failed: false, status: 0 };
  for (let ready = 0; ready < queries;) {
    const frame = await reader.readFrame('message from the compute');
    switch (frame[0]) {
      case MSG.readyForQuery:
        answers.status = frame[5]!;
        ready++;
        break;
      case MSG.commandComplete:
        answers.tags.push(readCString(frame, 5).value);
        break;
      case MSG.dataRow: {
        const length = frame.readInt32BE(7);
        answers.value = length < 0 ? null : frame.toString('utf8', 11, 11 + length);
        break;
      }
      case MSG.parameterStatus: {
        const name = readCString(frame, 5);
        parameters.set(name.value, readCString(frame, name.next).value);
        break;
      }
      case MSG.error:
        answers.failed = true;
        break;
      case MSG.rowDescription:
      case MSG.notice:
      case MSG.notification:
        break;
      default:
        answers.failed = true;
    }
  }
  return answers;
}

/** The answer to STARTUP_PROBE (undefined if it failed). */
export function fingerprintOf(answers: Answers): string | undefined {
  return !answers.failed && answers.status === TX_IDLE && typeof answers.value === 'string' ? answers.value : undefined;
}

/** DISCARD ALL on a backend its client left idle; true when it worked and nothing is left unread. */
export async function resetSession(socket: { write(b: Buffer): unknown }, reader: PacketReader, parameters: ServerParameters): Promise<boolean> {
  socket.write(DISCARD_ALL);
  const answers = await readAnswers(reader, 1, parameters);
  return !answers.failed && answers.tags[0] === 'DISCARD ALL' && answers.status === TX_IDLE && reader.pending === 0;
}

/** STARTUP_PROBE asked again: the same answer as at the backend's start? */
export async function startupUnchanged(socket: { write(b: Buffer): unknown }, reader: PacketReader, fingerprint: string, parameters: ServerParameters): Promise<boolean> {
  socket.write(STARTUP_PROBE);
  return fingerprintOf(await readAnswers(reader, 1, parameters)) === fingerprint && reader.pending === 0;
}
