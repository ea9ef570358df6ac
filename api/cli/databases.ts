/** `pgfleet db`, `roles`, `reset-password`, `tokens`, `quotas`, `usage`: a partner's databases. */
import { CliError } from '../cli-error.ts';
import { DUMP_TOKEN_TTL_SECONDS, type DumpedDatabase, type SessionToken, dump, restore } from '../tenant-dump.ts';
import { type Command, type Context, arg, enc, fields, integer, labelsOf, need, paginate, print, printItem } from './command.ts';
import { rangeOption } from './sizes.ts';

const dbPath = (ctx: Context, command: string) => `/v1/databases/${enc(arg(ctx, 0, 'a database id', command))}`;

/** The settings a create or an update names (unset options are left out). */
function settings(ctx: Context) {
  const units = ctx.v['compute-units'];
  if (units !== undefined && (typeof units !== 'string' || Number.isNaN(Number(units)))) throw new CliError('--compute-units needs a number such as 0.5');
  return {
    name: ctx.v.name as string | undefined,
    suspend_timeout_seconds: integer(ctx, 'suspend-timeout'),
    history_retention_seconds: integer(ctx, 'retention'),
    pool_size: integer(ctx, 'pool-size'),
    compute_units: units === undefined ? undefined : Number(units),
    autoscaling: rangeOption(ctx.v.autoscaling),
  };
}

const lifecycle = (verb: 'suspend' | 'wake'): Command => ({
  name: `db ${verb}`, usage: '<database id>', summary: verb === 'suspend' ? 'stop its compute now (sessions end)' : 'start its compute now',
  async run(ctx) {
    const db = await ctx.api.call('POST', `${dbPath(ctx, `db ${verb}`)}/${verb}`);
    print(ctx, db, () => [`${db.id}: ${db.state}`]);
  },
});

const QUOTA_OPTIONS: Record<string, string> = {
  'compute-time': 'compute_time_seconds', 'compute-unit-seconds': 'compute_unit_seconds', transfer: 'data_transfer_bytes', written: 'written_data_bytes', storage: 'storage_bytes', 'max-connections': 'max_connections',
};

export const databaseCommands: Command[] = [
  {
    name: 'db create', usage: '--user <user_id> [--name <name>] [--region <region>] [--pg-version <major>] [--suspend-timeout <s>] [--autoscaling <min-max>] [--compute-units <cu>] [--template <id>] [--label k=v,...]',
    summary: 'a new database for one of your users; prints its id and connection URI (the password is in it, shown once)',
    async run(ctx) {
      const user = need(ctx, 'user', 'db create', '<user_id>');
      const pgVersion = ctx.v['pg-version'] === undefined ? undefined : Number(ctx.v['pg-version']);
      if (pgVersion !== undefined && !Number.isInteger(pgVersion)) throw new CliError('--pg-version needs a Postgres major, such as 17');
      const db = await ctx.api.call('POST', '/v1/databases', {
        user_id: user, region: ctx.v.region, pg_version: pgVersion, template: ctx.v.template, labels: labelsOf(ctx), ...settings(ctx),
      });
      print(ctx, db, () => [`id: ${db.id}`, `uri: ${db.connection_uri}   (the password is shown once)`]);
    },
  },
  {
    name: 'db list', usage: '[--user <user_id>] [--search <text>] [--partner <id>]',
    summary: 'your databases (operator key: every partner\'s); --search matches an id, an endpoint, a user id or the name',
    async run(ctx) {
      const q = new URLSearchParams({ limit: '1000' });
      if (typeof ctx.v.user === 'string') q.set('user_id', ctx.v.user);
      if (typeof ctx.v.search === 'string') q.set('q', ctx.v.search);
      if (typeof ctx.v.partner === 'string') q.set('partner_id', ctx.v.partner);
      await paginate(ctx, `/v1/databases?${q}`, 'databases', (db) => printItem(ctx, db,
        `${db.id}\t${db.user_id}\t${db.region}\t${db.state}\t${db.host}\t${db.current_cu} CU (${db.autoscaling.min_cu}-${db.autoscaling.max_cu})`));
    },
  },
  {
    name: 'db show', usage: '<database id>', summary: 'its settings, state, pg_version and postgres_version',
    async run(ctx) {
      const db = await ctx.api.call('GET', dbPath(ctx, 'db show'));
      print(ctx, db, () => fields(db));
    },
  },
  {
    name: 'db update', usage: '<database id> [--name <name>] [--suspend-timeout <s>] [--retention <s>] [--pool-size <n>] [--autoscaling <min-max>] [--compute-units <cu>]',
    summary: 'change its settings (quotas: pgfleet quotas set)',
    async run(ctx) {
      const db = await ctx.api.call('PATCH', dbPath(ctx, 'db update'), settings(ctx));
      print(ctx, db, () => fields(db));
    },
  },
  {
    name: 'db delete', usage: '<database id>', summary: 'delete it: its compute stops and its data is removed',
    async run(ctx) {
      const id = arg(ctx, 0, 'a database id', 'db delete');
      await ctx.api.call('DELETE', `/v1/databases/${enc(id)}`);
      print(ctx, { id, deleted: true }, () => [`deleted ${id}`]);
    },
  },
  lifecycle('suspend'),
  lifecycle('wake'),
  {
    name: 'db dump', usage: '<database id> [--out <file>]', summary: 'pg_dump (custom format) of its major, to the file or stdout',
    details: "pg_dump of the database's major from PGFLEET_PG_CLIENT_BIN, /usr/lib/postgresql/<major>/bin or PATH, signed in with a 60-second token of the owner role.",
    async run(ctx) {
      const route = dbPath(ctx, 'db dump');
      if (ctx.v.out === undefined && process.stdout.isTTY) throw new CliError('db dump writes a binary archive: give --out <file>, or redirect stdout');
      const db: DumpedDatabase = await ctx.api.call('GET', route);
      const session: SessionToken = await ctx.api.call('POST', `${route}/tokens`, { ttl_seconds: DUMP_TOKEN_TTL_SECONDS });
      const out = ctx.v.out === '-' ? undefined : (ctx.v.out as string | undefined);
      await dump(db, session, out);
      // Lines go to stderr: the dump may be on stdout.
      process.stderr.write(`dumped ${db.id} (Postgres ${db.pg_version})${out ? ` to ${out}` : ''}\n`);
    },
  },
  {
    name: 'db restore', usage: '<database id> --in <file> [--clean]', summary: 'pg_restore of its major in one transaction (--clean: drop the dump\'s objects first)',
    async run(ctx) {
      const route = dbPath(ctx, 'db restore');
      const file = need(ctx, 'in', 'db restore', '<file>');
      const db: DumpedDatabase = await ctx.api.call('GET', route);
      const session: SessionToken = await ctx.api.call('POST', `${route}/tokens`, { ttl_seconds: DUMP_TOKEN_TTL_SECONDS });
      await restore(db, session, file, ctx.v.clean === true);
      process.stderr.write(`restored ${file} into ${db.id}\n`);
    },
  },
  {
    name: 'roles list', usage: '<database id>', summary: 'its login roles',
    async run(ctx) {
      const db = await ctx.api.call('GET', dbPath(ctx, 'roles list'));
      print(ctx, { roles: db.roles }, () => db.roles.map((r: string) => (r === db.role ? `${r}\t(owner)` : r)));
    },
  },
  {
    name: 'roles add', usage: '<database id> <role>', summary: "a new login role with the owner's rights; prints its connection URI (its password is shown once)",
    async run(ctx) {
      const role = arg(ctx, 1, 'a role name', 'roles add');
      const r = await ctx.api.call('POST', `${dbPath(ctx, 'roles add')}/roles`, { name: role });
      print(ctx, r, () => [`role: ${r.role}`, `uri: ${r.connection_uri}   (the password is shown once)`]);
    },
  },
  {
    name: 'reset-password', usage: '<database id> <role>', summary: 'a new password for a role (the old one stops working at once); prints the URI with it',
    async run(ctx) {
      const role = arg(ctx, 1, 'a role name', 'reset-password');
      const r = await ctx.api.call('POST', `${dbPath(ctx, 'reset-password')}/roles/${enc(role)}/reset_password`);
      print(ctx, r, () => [`role: ${r.role}`, `uri: ${r.connection_uri}   (the password is shown once)`]);
    },
  },
  {
    name: 'tokens create', usage: '<database id> [--role <role>] [--ttl <seconds>]', summary: 'a short-lived JWT that connects as a role (give it as the password)',
    async run(ctx) {
      const t = await ctx.api.call('POST', `${dbPath(ctx, 'tokens create')}/tokens`, { role: ctx.v.role, ttl_seconds: integer(ctx, 'ttl') });
      print(ctx, t, () => [t.token, `role: ${t.role}, expires at ${t.expires_at}`]);
    },
  },
  {
    name: 'quotas show', usage: '<database id>', summary: 'its quotas (null: unlimited)',
    async run(ctx) {
      const db = await ctx.api.call('GET', dbPath(ctx, 'quotas show'));
      print(ctx, db.quotas, () => fields(db.quotas));
    },
  },
  {
    name: 'quotas set', usage: '<database id> [--compute-time <s>] [--compute-unit-seconds <s>] [--transfer <bytes>] [--written <bytes>] [--storage <bytes>] [--max-connections <n>]',
    summary: 'change quotas (per calendar month but storage and connections); "none" = unlimited; others stay as they are',
    async run(ctx) {
      const quotas: Record<string, number | null> = {};
      for (const [option, name] of Object.entries(QUOTA_OPTIONS)) {
        const value = ctx.v[option];
        if (value === undefined) continue;
        if (value !== 'none' && (typeof value !== 'string' || !/^\d+$/.test(value))) throw new CliError(`--${option} needs a whole number, or none`);
        quotas[name] = value === 'none' ? null : Number(value);
      }
      if (Object.keys(quotas).length === 0) throw new CliError(`quotas set needs one of ${Object.keys(QUOTA_OPTIONS).map((o) => `--${o}`).join(', ')}`);
      const db = await ctx.api.call('PATCH', dbPath(ctx, 'quotas set'), { quotas });
      print(ctx, db.quotas, () => fields(db.quotas));
    },
  },
  {
    name: 'usage', usage: '[<database id>] [--from <time>] [--to <time>] [--granularity hourly|daily|monthly]',
    summary: "a database's usage per period; without an id, every database's over the range",
    async run(ctx) {
      const q = new URLSearchParams();
      for (const k of ['from', 'to', 'granularity']) if (typeof ctx.v[k] === 'string') q.set(k, ctx.v[k] as string);
      if (!ctx.args[0]) {
        await paginate(ctx, `/v1/usage?${q}`, 'databases', (d) => printItem(ctx, d, `${d.database_id}\t${JSON.stringify(d.usage)}`));
        return;
      }
      const u = await ctx.api.call('GET', `${dbPath(ctx, 'usage')}/usage?${q}`);
      print(ctx, u, () => u.periods.map((p: any) => `${p.period_start}\t${JSON.stringify(p.usage)}`));
    },
  },
];
