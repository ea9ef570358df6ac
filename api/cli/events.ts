/** `pgfleet events`, `webhooks`, `audit`: what happened, who is told, who did what. */
import { type Command, type Context, arg, enc, fields, integer, need, paginate, print, printItem } from './command.ts';

const FOLLOW_EVERY_MS = 2000;
const eventLine = (e: any) => `${e.created_at}\t${e.type}\t${e.database_id ?? '-'}\t${JSON.stringify(e.data)}`;

function eventQuery(ctx: Context, cursor: string | null): string {
  const q = new URLSearchParams({ limit: '1000' });
  if (typeof ctx.v.type === 'string') q.set('type', ctx.v.type);
  if (typeof ctx.v.database === 'string') q.set('database_id', ctx.v.database);
  if (typeof ctx.v.partner === 'string') q.set('partner_id', ctx.v.partner);
  if (cursor) q.set('cursor', cursor);
  else if (typeof ctx.v.since === 'string') q.set('since', ctx.v.since);
  return `/v1/events?${q}`;
}

const webhookPath = (ctx: Context, command: string) => `/v1/webhooks/${enc(arg(ctx, 0, 'a webhook id', command))}`;

export const eventCommands: Command[] = [
  {
    name: 'events', usage: '[--type <type or pattern,...>] [--database <id>] [--since <time>] [--cursor <cursor>] [--follow]',
    summary: 'events in the order they happened (database.created, quota.exceeded, …); --follow waits for more',
    details: 'The cursor to resume from is written to stderr at the end (# next_cursor …). Types: pgfleet events types.',
    async run(ctx) {
      let cursor = typeof ctx.v.cursor === 'string' ? ctx.v.cursor : null;
      for (;;) {
        const page = await ctx.api.call('GET', eventQuery(ctx, cursor));
        for (const e of page.events) printItem(ctx, e, eventLine(e));
        cursor = page.next_cursor ?? cursor;
        if (page.events.length > 0) continue;
        if (!ctx.v.follow) break;
        await new Promise((r) => setTimeout(r, FOLLOW_EVERY_MS));
      }
      if (cursor) process.stderr.write(`# next_cursor ${cursor}\n`);
    },
  },
  {
    name: 'events types', usage: '', summary: 'every event type and what it means',
    async run(ctx) {
      const { types } = await ctx.api.call('GET', '/v1/events/types');
      for (const t of types) printItem(ctx, t, `${t.type}\t${t.description}${t.operator_only ? ' (operator)' : ''}`);
    },
  },
  {
    name: 'webhooks create', usage: '<https URL> --events <type or pattern,...> [--secret <whsec_…>] [--description <text>]',
    summary: 'register an endpoint; prints its id and signing secret (shown once)',
    details: 'Deliveries are signed as Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), retried for over a day, in order per database.',
    async run(ctx) {
      const events = need(ctx, 'events', 'webhooks create', '<type or pattern,...>').split(',').map((e) => e.trim()).filter(Boolean);
      const url = arg(ctx, 0, 'the URL of the endpoint', 'webhooks create');
      const w = await ctx.api.call('POST', '/v1/webhooks', { url, events, secret: ctx.v.secret, description: ctx.v.description });
      print(ctx, w, () => [`id: ${w.id}`, `secret: ${w.secret}   (shown once)`]);
    },
  },
  {
    name: 'webhooks list', usage: '', summary: 'your webhook endpoints',
    async run(ctx) {
      const { webhooks } = await ctx.api.call('GET', '/v1/webhooks');
      for (const w of webhooks) printItem(ctx, w, `${w.id}\t${w.url}\t${w.events.join(',')}`);
    },
  },
  {
    name: 'webhooks delete', usage: '<webhook id>', summary: 'remove an endpoint (its pending deliveries are not sent)',
    async run(ctx) {
      const id = arg(ctx, 0, 'a webhook id', 'webhooks delete');
      await ctx.api.call('DELETE', webhookPath(ctx, 'webhooks delete'));
      print(ctx, { id, deleted: true }, () => [`deleted ${id}`]);
    },
  },
  {
    name: 'webhooks deliveries', usage: '<webhook id> [--state pending|delivered|failed]', summary: 'its deliveries, newest first, with attempts and last error',
    async run(ctx) {
      const q = typeof ctx.v.state === 'string' ? `?state=${enc(ctx.v.state)}` : '';
      await paginate(ctx, `${webhookPath(ctx, 'webhooks deliveries')}/deliveries${q}`, 'deliveries', (d) =>
        printItem(ctx, d, `${d.id}\t${d.event_type}\t${d.state}\t${d.attempts} attempts\t${d.last_error ?? ''}`));
    },
  },
  {
    name: 'webhooks delivery', usage: '<webhook id> <delivery id>', summary: 'one delivery with every attempt',
    async run(ctx) {
      const d = await ctx.api.call('GET', `${webhookPath(ctx, 'webhooks delivery')}/deliveries/${enc(arg(ctx, 1, 'a delivery id', 'webhooks delivery'))}`);
      const { attempt_log: attempts, ...delivery } = d;
      print(ctx, d, () => [...fields(delivery),
        ...attempts.map((a: any) => `  attempt ${a.attempt} at ${a.started_at} (${a.duration_ms} ms, ${a.node_id}): ${a.status ?? '-'} ${a.error ?? ''}`)]);
    },
  },
  {
    name: 'audit', usage: '[--action <operationId>] [--target <id>] [--key-id <id>] [--result ok|error] [--from <time>] [--to <time>] [--partner <id>] [--limit <n>]',
    summary: 'who did what through the API, newest first (partners: their own; operator: all)',
    async run(ctx) {
      const q = new URLSearchParams();
      const map: Record<string, string> = { action: 'action', target: 'target', 'key-id': 'key_id', result: 'result', from: 'from', to: 'to', partner: 'partner_id' };
      for (const [option, param] of Object.entries(map)) if (typeof ctx.v[option] === 'string') q.set(param, ctx.v[option] as string);
      q.set('limit', String(integer(ctx, 'limit') ?? 100));
      const { entries } = await ctx.api.call('GET', `/v1/audit?${q}`);
      for (const e of entries) printItem(ctx, e, `${e.at}\t${e.key_id}\t${e.action}\t${e.target ?? '-'}\t${e.status} ${e.result}\t${e.source_address}\t${e.request_id}`);
    },
  },
];
