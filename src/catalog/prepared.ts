import crypto from 'node:crypto';

/**
 * A catalog statement of a hot path (every API request, every create): each catalog connection
 * parses it once and Postgres keeps its plan, where an unnamed statement is parsed and planned on
 * every call. Named by a hash of its text, so two texts never share a name. A catalog reached
 * through a transaction pooler must pass protocol-level prepared statements through (PgBouncer
 * 1.21+ with `max_prepared_statements`).
 */
export interface PreparedStatement {
  readonly name: string;
  readonly text: string;
}

export function prepared(text: string): PreparedStatement {
  return { name: `pgfleet_${crypto.createHash('sha256').update(text).digest('hex').slice(0, 24)}`, text };
}
