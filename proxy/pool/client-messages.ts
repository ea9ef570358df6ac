/**
 * How a pooled client's messages reach the backend it holds for the moment: its named prepared
 * statements are kept here and exist on backends under their content name (prepared on a backend
 * the first time it runs them), Close of a statement is answered here, DEALLOCATE and DISCARD ALL
 * act on what the proxy keeps, and session features are refused where the statement would run.
 */
import { MSG, TARGET } from '../protocol/codes.ts';
import {
  bindPlain, closeComplete, commandComplete, executePlain, parseComplete, parseMessage, parsePlain, queryMessage, queryText,
  readBindStatement, readParse, readTarget, renameIn, targetMessage,
} from '../protocol/extended-query.ts';
import { readyForQuery } from '../protocol/messages.ts';
import { type ClientStatement, serverStatementName } from './prepared.ts';
import type { PooledBackend, Slot } from './pooled-backend.ts';
import { type LocalCommand, scanSql } from './sql-scan.ts';

const SLOT_PARSE: Slot = { ends: 'parse' };
const SLOT_BIND: Slot = { ends: 'bind' };
const SLOT_DESCRIBE: Slot = { ends: 'describe' };
const SLOT_EXECUTE: Slot = { ends: 'execute' };
const SLOT_CLOSE: Slot = { ends: 'close' };
const SLOT_SYNC: Slot = { ends: 'sync' };
const SLOT_QUERY: Slot = { ends: 'query' };
const SLOT_HIDDEN_PARSE: Slot = { ends: 'parse', hidden: true };
const SLOT_HIDDEN_BIND: Slot = { ends: 'bind', hidden: true };
const SLOT_HIDDEN_CLOSE: Slot = { ends: 'close', hidden: true };

export interface MessageHost {
  /** Host of the same endpoint without pooling, named in refusals. */
  readonly unpooledHost: string;
  /** DISCARD ALL also puts the client's settings back to those of its startup. */
  discardSettings(): void;
  /** The client sent Terminate. */
  terminated(): void;
}

export class ClientMessages {
  private statements: Map<string, ClientStatement> | undefined;

  constructor(private readonly host: MessageHost) {}

  /** DEALLOCATE and DISCARD ALL act on what the proxy keeps for the client; the command tag is the answer. */
  runLocal(command: LocalCommand): Buffer {
    if (command.kind === 'deallocate') {
      this.statements?.delete(command.name);
      return commandComplete('DEALLOCATE');
    }
    this.statements = undefined;
    if (command.kind === 'deallocate-all') return commandComplete('DEALLOCATE ALL');
    this.host.discardSettings();
    return commandComplete('DISCARD ALL');
  }

  /** One message of the client to its backend, statement names rewritten. */
  route(backend: PooledBackend, frame: Buffer): void {
    switch (frame[0]) {
      case MSG.query:
        this.query(backend, frame);
        return;
      case MSG.parse:
        backend.unsynced = true;
        this.parse(backend, frame);
        return;
      case MSG.bind: {
        backend.unsynced = true;
        const ref = readBindStatement(frame);
        const statement = this.prepared(backend, ref.name);
        backend.send(statement ? renameIn(frame, ref.start, ref.end, statement.serverName) : frame, SLOT_BIND);
        return;
      }
      case MSG.describe: {
        backend.unsynced = true;
        const target = readTarget(frame);
        const statement = target.kind === TARGET.statement ? this.prepared(backend, target.name) : undefined;
        backend.send(statement ? targetMessage(MSG.describe, TARGET.statement, statement.serverName) : frame, SLOT_DESCRIBE);
        return;
      }
      case MSG.close: {
        backend.unsynced = true;
        const target = readTarget(frame);
        if (target.kind === TARGET.statement && target.name !== '') {
          // The backend keeps it for others; the client's name is gone.
          this.statements?.delete(target.name);
          backend.answer(closeComplete);
        } else {
          backend.send(frame, SLOT_CLOSE);
        }
        return;
      }
      case MSG.execute:
        backend.unsynced = true;
        backend.send(frame, SLOT_EXECUTE);
        return;
      case MSG.sync:
        backend.unsynced = false;
        backend.send(frame, SLOT_SYNC);
        return;
      case MSG.functionCall:
        backend.send(frame, SLOT_QUERY);
        return;
      case MSG.terminate:
        this.host.terminated();
        return;
      default: // Flush, CopyData, CopyDone, CopyFail
        backend.send(frame);
    }
  }

  private query(backend: PooledBackend, frame: Buffer): void {
    const scan = scanSql(queryText(frame));
    if (scan?.refused) {
      backend.send(queryMessage(this.refusalSql(scan.refused)), SLOT_QUERY);
      return;
    }
    if (scan?.local && scan.local.kind !== 'discard-all') {
      const answer = this.runLocal(scan.local);
      backend.answer(() => Buffer.concat([answer, readyForQuery(backend.txStatus)]));
      return;
    }
    if (scan?.touchesSession) backend.resync = true;
    backend.send(frame, SLOT_QUERY);
  }

  private parse(backend: PooledBackend, frame: Buffer): void {
    const parse = readParse(frame);
    const scan = scanSql(parse.query);
    if (scan?.refused) {
      // The backend raises the error in the Parse's place, so that it aborts what Postgres would.
      backend.send(parsePlain('', this.refusalSql(scan.refused)), SLOT_HIDDEN_PARSE);
      backend.send(bindPlain(), SLOT_HIDDEN_BIND);
      backend.send(executePlain(), SLOT_EXECUTE);
      return;
    }
    if (scan?.touchesSession) backend.resync = true;
    if (parse.name === '') {
      backend.send(frame, SLOT_PARSE);
      return;
    }
    const statement: ClientStatement = { serverName: serverStatementName(parse.rest), rest: parse.rest };
    (this.statements ??= new Map()).set(parse.name, statement);
    const forget = (ok: boolean) => {
      if (!ok && this.statements?.get(parse.name) === statement) this.statements.delete(parse.name);
    };
    if (backend.statements.use(statement.serverName)) {
      backend.answer(parseComplete, forget);
      return;
    }
    this.prepareOn(backend, statement, { ends: 'parse', done: forget });
  }

  /** The client's statement, prepared on the backend when it is not there yet. */
  private prepared(backend: PooledBackend, name: string): ClientStatement | undefined {
    if (name === '') return undefined;
    const statement = this.statements?.get(name);
    if (!statement) return undefined; // the backend answers "does not exist" with the client's name
    if (!backend.statements.use(statement.serverName)) this.prepareOn(backend, statement, SLOT_HIDDEN_PARSE);
    return statement;
  }

  private prepareOn(backend: PooledBackend, statement: ClientStatement, slot: Slot): void {
    for (const evicted of backend.statements.add(statement.serverName)) {
      backend.send(targetMessage(MSG.close, TARGET.statement, evicted), { ...SLOT_HIDDEN_CLOSE, done: (ok) => ok || backend.statements.add(evicted) });
    }
    const done = slot.done;
    backend.send(parseMessage(statement.serverName, statement.rest), {
      ...slot,
      done: (ok) => {
        if (!ok) backend.statements.delete(statement.serverName);
        done?.(ok);
      },
    });
  }

  private refusalSql(feature: string): string {
    const text = (s: string) => `'${s.replace(/'/g, "''").replace(/\$/g, '')}'`;
    const message = `${feature} is not available on a pooled connection`;
    const hint = `Connect to the unpooled endpoint ${this.host.unpooledHost} (the host name without -pooler) for session features.`;
    return `DO $pgfleet$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = ${text(message)}, HINT = ${text(hint)}; END$pgfleet$`;
  }
}
