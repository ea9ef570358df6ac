/** `pgfleet partners`, `nodes`, `neon`, `keys`, `fleet`, `failures`, `jwt-issuer`, `whoami`, `status`. */
import fs from 'node:fs';
import { CliError } from '../cli-error.ts';
import { type Command, type Context, arg, enc, fields, integer, need, print, printItem } from './command.ts';

const NODE_POLL_MS = 2000;

async function nodeHolding(ctx: Context, id: string): Promise<any> {
  const { nodes } = await ctx.api.call('GET', '/v1/nodes');
  const node = nodes.find((n: any) => n.id === id);
  if (!node) throw new CliError(`node "${id}" is not in GET /v1/nodes`);
  return node;
}

/** A command that shows one answer of the API, field by field. */
const shows = (name: string, summary: string, path: string): Command => ({
  name, usage: '', summary,
  async run(ctx) {
    const answer = await ctx.api.call('GET', path);
    print(ctx, answer, () => fields(answer));
  },
});

export const operatorCommands: Command[] = [
  {
    name: 'status', usage: '[--timeout <seconds>]', summary: 'whether the gateway answers and its catalog is reachable (exit 0 when ready); --timeout waits that long for it',
    async run(ctx) {
      const deadline = Date.now() + (integer(ctx, 'timeout') ?? 0) * 1000;
      for (;;) {
        const ready = await ctx.api.open('/readyz').catch((err: Error) => ({ status: 0, body: { status: err.message } }));
        if (ready.status === 200 || Date.now() >= deadline) {
          print(ctx, ready.body, () => [`${ready.body?.status ?? ready.status}`]);
          return ready.status === 200 ? 0 : 1;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    },
  },
  {
    name: 'whoami', usage: '', summary: 'what the key is: operator, or which partner (and its key id)',
    async run(ctx) {
      const w = await ctx.api.call('GET', '/v1/whoami');
      print(ctx, w, () => [w.kind === 'operator' ? `operator (key ${w.key_id})` : `partner ${w.partner_name} (${w.partner_id}), key ${w.key_id}`]);
    },
  },
  {
    name: 'partners create', usage: '--name <name>', summary: "(operator) a partner; prints its id and API key (shown once)",
    async run(ctx) {
      const p = await ctx.api.call('POST', '/v1/partners', { name: need(ctx, 'name', 'partners create') });
      print(ctx, p, () => [`id: ${p.id}`, `api_key: ${p.api_key}   (shown once)`]);
    },
  },
  {
    name: 'partners list', usage: '', summary: '(operator) every partner',
    async run(ctx) {
      const { partners } = await ctx.api.call('GET', '/v1/partners');
      for (const p of partners) printItem(ctx, p, `${p.id}\t${p.name}\t${p.created_at}`);
    },
  },
  {
    name: 'partners rotate-key', usage: '<partner id>', summary: '(operator) a new API key; the old one stops working at once',
    async run(ctx) {
      const p = await ctx.api.call('POST', `/v1/partners/${enc(arg(ctx, 0, 'a partner id', 'partners rotate-key'))}/keys`);
      print(ctx, p, () => [`id: ${p.id}`, `api_key: ${p.api_key}   (shown once)`]);
    },
  },
  {
    name: 'partners retention', usage: '<partner id> --seconds <n>|default', summary: "(operator) history retention of its databases that set none",
    async run(ctx) {
      const seconds = need(ctx, 'seconds', 'partners retention', '<n> or default');
      if (seconds !== 'default' && !/^\d+$/.test(seconds)) throw new CliError('--seconds needs a whole number, or default');
      const p = await ctx.api.call('PATCH', `/v1/partners/${enc(arg(ctx, 0, 'a partner id', 'partners retention'))}`,
        { default_history_retention_seconds: seconds === 'default' ? null : Number(seconds) });
      print(ctx, p, () => fields(p));
    },
  },
  {
    name: 'partners delete', usage: '<partner id>', summary: '(operator) delete a partner and every database of its users',
    async run(ctx) {
      const id = arg(ctx, 0, 'a partner id', 'partners delete');
      await ctx.api.call('DELETE', `/v1/partners/${enc(id)}`);
      print(ctx, { id, deleted: true }, () => [`deleted ${id}`]);
    },
  },
  {
    name: 'nodes list', usage: '', summary: '(operator) the fleet\'s nodes: state, running computes, databases placed on each',
    async run(ctx) {
      const { nodes } = await ctx.api.call('GET', '/v1/nodes');
      for (const n of nodes) printItem(ctx, n, `${n.id}\t${n.state}\t${n.address ?? '-'}\t${n.running}/${n.max_computes} running\t${n.databases} databases`);
    },
  },
  {
    name: 'nodes drain', usage: '<node id> [--wait]', summary: '(operator) move every database of a node to the others; --wait until it holds none',
    async run(ctx) {
      const id = arg(ctx, 0, 'a node id', 'nodes drain');
      let node = await ctx.api.call('POST', `/v1/nodes/${enc(id)}/drain`);
      if (!ctx.v.json) ctx.out(`draining ${id}: ${node.databases} databases to move`);
      while (ctx.v.wait && node.databases > 0) {
        await new Promise((r) => setTimeout(r, NODE_POLL_MS));
        node = await nodeHolding(ctx, id);
        if (!ctx.v.json) ctx.out(`${id}: ${node.databases} databases left`);
      }
      print(ctx, node, () => (ctx.v.wait ? [`${id} holds no database`] : []));
    },
  },
  {
    name: 'keys rotate', usage: '', summary: "(operator) a new token signing key; tokens of the old one stay valid until they expire",
    async run(ctx) {
      const k = await ctx.api.call('POST', '/v1/keys/rotate');
      print(ctx, k, () => [`kid: ${k.kid}`]);
    },
  },
  shows('fleet', "(operator) fleet-wide counts and this gateway's counters", '/v1/fleet'),
  {
    name: 'failures', usage: '', summary: '(operator) refused logins by reason, failed wakes, webhook deliveries failing',
    async run(ctx) {
      const f = await ctx.api.call('GET', '/v1/failures');
      print(ctx, f, () => [
        `refused logins since ${f.refused_logins.since}: ${JSON.stringify(f.refused_logins.by_reason)}`,
        ...f.refused_logins.recent.map((l: any) => `  ${l.at} ${l.reason}: ${l.why}`),
        `failed wakes: ${f.failed_wakes.length}`, ...f.failed_wakes.map((e: any) => `  ${e.created_at} ${e.database_id}: ${e.data.error}`),
        `webhook deliveries failing: ${f.webhook_failures.length}`, ...f.webhook_failures.map((d: any) => `  ${d.delivery_id} ${d.url} ${d.event_type}: ${d.last_error}`),
      ]);
    },
  },
  {
    name: 'jwt-issuer set', usage: '--issuer <iss> --audience <aud> (--jwks-uri <https URL> | --jwks-file <file>) [--user-claim <claim>]',
    summary: "register your own JWT issuer: connections may sign in with your users' tokens",
    async run(ctx) {
      const file = ctx.v['jwks-file'];
      const i = await ctx.api.call('PUT', '/v1/jwt-issuer', {
        issuer: need(ctx, 'issuer', 'jwt-issuer set'), audience: need(ctx, 'audience', 'jwt-issuer set'), jwks_uri: ctx.v['jwks-uri'],
        jwks: typeof file === 'string' ? JSON.parse(fs.readFileSync(file, 'utf8')) : undefined, user_claim: ctx.v['user-claim'],
      });
      print(ctx, i, () => fields(i));
    },
  },
  shows('jwt-issuer show', 'your JWT issuer', '/v1/jwt-issuer'),
  {
    name: 'jwt-issuer delete', usage: '', summary: 'remove your JWT issuer',
    async run(ctx) {
      await ctx.api.call('DELETE', '/v1/jwt-issuer');
      print(ctx, { deleted: true }, () => ['deleted']);
    },
  },
  {
    name: 'neon reconcile', usage: '', summary: '(operator) compare the catalog with Neon now; exit 3 while a region failed or a database is failed',
    details: 'Finishes abandoned creates, reports (and after the grace period deletes) orphaned projects, marks databases whose project is gone as failed.',
    async run(ctx) {
      const report = await ctx.api.call('POST', '/v1/neon/reconcile');
      print(ctx, report, () => [
        ...report.regions.flatMap((r: any) => [
          `${r.region} (${r.provider}): ${r.resources} resources, ${r.orphans.length} orphans, ${r.missing.length} newly missing, ${r.resumed.length} creates finished${r.error ? `; failed: ${r.error}` : ''}`,
          ...r.orphans.map((o: any) => `  orphan ${o.resource_id} (${o.database_id}) seen since ${o.first_seen_at}: ${o.deleted ? 'deleted' : 'kept until its grace period ends'}`),
          ...r.missing.map((m: any) => `  failed ${m.database_id}: ${m.detail}`),
          ...r.resumed.map((id: string) => `  created ${id}`),
        ]),
        ...report.failed.map((f: any) => `failed database ${f.database_id} (${f.region}): ${f.detail}`),
        ...report.pending_deletions.map((d: any) => `deletion owed ${d.database_id} (${d.region}): ${d.attempts} attempts${d.last_error ? `, last error: ${d.last_error}` : ''}; next at ${d.next_attempt_at}`),
      ]);
      // Non-zero when something needs the operator: a region that failed, or databases not served.
      return report.regions.some((r: { error?: string }) => r.error) || report.failed.length > 0 ? 3 : 0;
    },
  },
];
