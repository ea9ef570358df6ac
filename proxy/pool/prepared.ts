/**
 * Protocol-level prepared statements on pooled connections. A client's named statement is
 * kept by the proxy (name → query and parameter types) and exists on a backend under a name
 * made from its content, so two clients' statements of the same name never collide and
 * clients preparing the same query share it. Each backend keeps a bounded set of them, the
 * least recently used closed first (PgBouncer's max_prepared_statements).
 */
import crypto from 'node:crypto';

/** A client's prepared statement. */
export interface ClientStatement {
  /** Its name on backends. */
  serverName: string;
  /** Parse body after the name: query, parameter count and types. */
  rest: Buffer;
}

/** How the names of statements pgfleet prepares on backends begin. */
export const SERVER_STATEMENT_PREFIX = 'pgf_';

/** The backend name of a statement: the same query and parameter types give the same name. */
export function serverStatementName(rest: Buffer): string {
  return `${SERVER_STATEMENT_PREFIX}${crypto.createHash('sha256').update(rest).digest('base64url').slice(0, 24)}`;
}

/** The statements one backend has, in least-recently-used order. */
export class StatementCache {
  private readonly names = new Map<string, true>();

  constructor(private readonly capacity: number) {}

  /** Whether the backend has it; marks it used. */
  use(name: string): boolean {
    if (!this.names.delete(name)) return false;
    this.names.set(name, true);
    return true;
  }

  /** Records a statement being prepared; returns the names to close to stay within capacity. */
  add(name: string): string[] {
    this.names.set(name, true);
    const evicted: string[] = [];
    for (const oldest of this.names.keys()) {
      if (this.names.size - evicted.length <= this.capacity) break;
      if (oldest !== name) evicted.push(oldest);
    }
    for (const n of evicted) this.names.delete(n);
    return evicted;
  }

  delete(name: string): void {
    this.names.delete(name);
  }

  /** Exactly the statements the backend says it has (after something may have dropped some). */
  replaceWith(present: Iterable<string>): void {
    this.names.clear();
    for (const n of present) this.names.set(n, true);
  }

  get size(): number {
    return this.names.size;
  }
}
