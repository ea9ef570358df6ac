/**
 * The `pgfleet` command's API client: partners and databases, over the HTTP API.
 * The API URL and key come from --url/--key or PGFLEET_API_URL/PGFLEET_API_KEY.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { CliError } from './cli-error.ts';
import { DUMP_TOKEN_TTL_SECONDS, type DumpedDatabase, type SessionToken, dump, restore } from './tenant-dump.ts';

/** pgfleet's version, from its package.json. */
export const VERSION: string = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

export const USAGE = `usage:
  pgfleet start                                  run the gateway in this directory (same as npm start)
  pgfleet partners create --name <name>          (operator key) prints the partner's id and API key
  pgfleet partners list                          (operator key)
  pgfleet db create --user <user_id> [--name <name>] [--region <region>] [--pg-version <major>] [--json]
                                                 prints the connection URI (or the whole answer with --json)
  pgfleet db list [--user <user_id>]
  pgfleet db show <database id> [--json]         its settings, state and the Postgres version its computes run
  pgfleet db delete <database id>
  pgfleet db dump <database id> [--out <file>]   pg_dump (custom format) of its major, to the file or stdout
  pgfleet db restore <database id> --in <file> [--clean]
                                                 pg_restore of its major, in one transaction (--clean: drop
                                                 the dump's objects first)
  pgfleet branches create <database id> --name <name> [--parent <branch>] [--at <time or LSN>]
  pgfleet branches list <database id>
  pgfleet branches delete <database id> <branch>
  pgfleet branches reset <database id> <branch>   the branch becomes a copy of its parent now
  pgfleet restore <database id> --at <time or LSN> [--branch <branch>]
                                                 rewinds the branch (default main); its state before is kept as a branch
  pgfleet neon reconcile [--json]               (operator key) compare the catalog with Neon now: finish
                                                 abandoned creates, report/delete orphaned projects, mark
                                                 databases whose project is gone as failed
options: --url <API URL> (env PGFLEET_API_URL, default http://127.0.0.1:8080)
         --key <API key> (env PGFLEET_API_KEY)
         --help, --version (with any command)
dump and restore run pg_dump/pg_restore of the database's major from PGFLEET_PG_CLIENT_BIN,
/usr/lib/postgresql/<major>/bin or PATH; they sign in with a 60-second token of the owner role.
`;

interface Client {
  call(method: string, path: string, body?: unknown): Promise<any>;
}

function client(url: string, key: string | undefined): Client {
  return {
    async call(method, path, body) {
      if (!key) throw new CliError('no API key: pass --key or set PGFLEET_API_KEY');
      const headers: Record<string, string> = { authorization: `Bearer ${key}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      let res: Response;
      try {
        res = await fetch(new URL(path, url), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (err) {
        throw new CliError(`cannot reach the API at ${url}: ${(err as Error).cause ?? (err as Error).message}`);
      }
      const text = await res.text();
      const answer = text ? JSON.parse(text) : undefined;
      if (!res.ok) throw new CliError(`${res.status} ${answer?.error?.code ?? ''}: ${answer?.error?.message ?? text}`);
      return answer;
    },
  };
}

async function paginate(api: Client, query: URLSearchParams, each: (db: any) => void): Promise<void> {
  let cursor: string | null = null;
  do {
    if (cursor) query.set('cursor', cursor);
    const page: { databases: unknown[]; next_cursor: string | null } = await api.call('GET', `/v1/databases?${query}`);
    page.databases.forEach(each);
    cursor = page.next_cursor;
  } while (cursor);
}

/** Runs one command; returns the exit code. */
export async function runCli(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        key: { type: 'string' },
        name: { type: 'string' },
        user: { type: 'string' },
        region: { type: 'string' },
        parent: { type: 'string' },
        at: { type: 'string' },
        branch: { type: 'string' },
        'pg-version': { type: 'string' },
        out: { type: 'string' },
        in: { type: 'string' },
        clean: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    process.stderr.write(`pgfleet: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  const [group, action, arg, arg2] = positionals;
  if (v.version) {
    out(`pgfleet ${VERSION}`);
    return 0;
  }
  // A bare `pgfleet` only prints this: starting a gateway takes `pgfleet start`.
  if (v.help || group === 'help' || group === undefined) {
    out(USAGE);
    return 0;
  }
  const api = client(v.url ?? process.env.PGFLEET_API_URL ?? 'http://127.0.0.1:8080', v.key ?? process.env.PGFLEET_API_KEY);
  try {
    switch (`${group} ${action}`) {
      case 'partners create': {
        if (!v.name) throw new CliError('partners create needs --name');
        const p = await api.call('POST', '/v1/partners', { name: v.name });
        out(v.json ? JSON.stringify(p) : `id: ${p.id}\napi_key: ${p.api_key}   (shown once)`);
        return 0;
      }
      case 'partners list': {
        const { partners } = await api.call('GET', '/v1/partners');
        for (const p of partners) out(v.json ? JSON.stringify(p) : `${p.id}\t${p.name}\t${p.created_at}`);
        return 0;
      }
      case 'db create': {
        if (!v.user) throw new CliError('db create needs --user <user_id>');
        const pgVersion = v['pg-version'] === undefined ? undefined : Number(v['pg-version']);
        if (pgVersion !== undefined && !Number.isInteger(pgVersion)) throw new CliError('--pg-version needs a Postgres major, such as 17');
        const db = await api.call('POST', '/v1/databases', { user_id: v.user, name: v.name, region: v.region, pg_version: pgVersion });
        out(v.json ? JSON.stringify(db) : db.connection_uri);
        return 0;
      }
      case 'db list': {
        const query = new URLSearchParams({ limit: '1000' });
        if (v.user) query.set('user_id', v.user);
        await paginate(api, query, (db) => out(v.json ? JSON.stringify(db) : `${db.id}\t${db.user_id}\t${db.region}\t${db.state}\t${db.host}`));
        return 0;
      }
      case 'db show': {
        if (!arg) throw new CliError('db show needs a database id');
        const db = await api.call('GET', `/v1/databases/${encodeURIComponent(arg)}`);
        if (v.json) out(JSON.stringify(db));
        else for (const [k, value] of Object.entries(db)) out(`${k}: ${typeof value === 'object' && value !== null ? JSON.stringify(value) : value}`);
        return 0;
      }
      case 'db dump':
      case 'db restore': {
        if (!arg) throw new CliError(`db ${action} needs a database id`);
        if (action === 'restore' && !v.in) throw new CliError('db restore needs --in <file>');
        if (action === 'dump' && v.out === undefined && process.stdout.isTTY) throw new CliError('db dump writes a binary archive: give --out <file>, or redirect stdout');
        const route = `/v1/databases/${encodeURIComponent(arg)}`;
        const db: DumpedDatabase = await api.call('GET', route);
        const session: SessionToken = await api.call('POST', `${route}/tokens`, { ttl_seconds: DUMP_TOKEN_TTL_SECONDS });
        if (action === 'dump') await dump(db, session, v.out === '-' ? undefined : v.out);
        else await restore(db, session, v.in!, v.clean === true);
        // Lines go to stderr: a dump may be on stdout.
        process.stderr.write(`${action === 'dump' ? `dumped ${arg} (Postgres ${db.pg_version})${v.out && v.out !== '-' ? ` to ${v.out}` : ''}` : `restored ${v.in} into ${arg}`}\n`);
        return 0;
      }
      case 'db delete': {
        if (!arg) throw new CliError('db delete needs a database id');
        await api.call('DELETE', `/v1/databases/${encodeURIComponent(arg)}`);
        out(`deleted ${arg}`);
        return 0;
      }
      case 'branches create': {
        if (!arg || !v.name) throw new CliError('branches create needs a database id and --name');
        const b = await api.call('POST', `/v1/databases/${encodeURIComponent(arg)}/branches`, { name: v.name, parent: v.parent, at: v.at });
        out(v.json ? JSON.stringify(b) : b.connection_uri);
        return 0;
      }
      case 'branches list': {
        if (!arg) throw new CliError('branches list needs a database id');
        const { branches } = await api.call('GET', `/v1/databases/${encodeURIComponent(arg)}/branches`);
        for (const b of branches) out(v.json ? JSON.stringify(b) : `${b.name}\t${b.parent ?? '-'}\t${b.state}\t${b.host}`);
        return 0;
      }
      case 'branches delete':
      case 'branches reset': {
        if (!arg || !arg2) throw new CliError(`branches ${action} needs a database id and a branch name`);
        const route = `/v1/databases/${encodeURIComponent(arg)}/branches/${encodeURIComponent(arg2)}`;
        if (action === 'delete') await api.call('DELETE', route);
        else await api.call('POST', `${route}/reset`);
        out(`${action === 'delete' ? 'deleted' : 'reset'} ${arg2}`);
        return 0;
      }
      case 'neon reconcile': {
        const report = await api.call('POST', '/v1/neon/reconcile');
        if (v.json) {
          out(JSON.stringify(report));
          return 0;
        }
        for (const r of report.regions) {
          out(`${r.region} (${r.provider}): ${r.resources} resources, ${r.orphans.length} orphans, ${r.missing.length} newly missing, ${r.resumed.length} creates finished${r.error ? `; failed: ${r.error}` : ''}`);
          for (const o of r.orphans) out(`  orphan ${o.resource_id} (${o.database_id}) seen since ${o.first_seen_at}: ${o.deleted ? 'deleted' : 'kept until its grace period ends'}`);
          for (const m of r.missing) out(`  failed ${m.database_id}: ${m.detail}`);
          for (const id of r.resumed) out(`  created ${id}`);
        }
        for (const f of report.failed) out(`failed database ${f.database_id} (${f.region}): ${f.detail}`);
        for (const d of report.pending_deletions) {
          out(`deletion owed ${d.database_id} (${d.region}): ${d.attempts} attempts${d.last_error ? `, last error: ${d.last_error}` : ''}; next at ${d.next_attempt_at}`);
        }
        // Non-zero when something needs the operator: a region that failed, or databases not served.
        return report.regions.some((r: { error?: string }) => r.error) || report.failed.length > 0 ? 3 : 0;
      }
      default:
        if (group === 'restore' && action) {
          if (!v.at) throw new CliError('restore needs --at <RFC 3339 time or LSN>');
          const r = await api.call('POST', `/v1/databases/${encodeURIComponent(action)}/restore`, { at: v.at, branch: v.branch });
          out(v.json ? JSON.stringify(r) : `restored ${r.branch.name} to ${v.at}; the state before is branch ${r.before.name}`);
          return 0;
        }
        process.stderr.write(`pgfleet: unknown command "${positionals.join(' ')}"\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`pgfleet: ${err.message}\n`);
    return 1;
  }
}
