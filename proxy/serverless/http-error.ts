import { PgfleetError } from '../../src/errors.ts';

/**
 * A request the serverless door refuses at the HTTP level (no such route, a body over the limit,
 * a malformed Neon-Connection-String or JSON body, a result over the limit). It still carries a
 * SQLSTATE, which the answer's `code` field repeats.
 */
export class HttpError extends PgfleetError {
  constructor(status: number, message: string, sqlstate = '08P01') {
    super(message, sqlstate, status, 'http_error');
  }
}
