/** `pgfleet migrations` and `templates`: fleet-wide migrations (with a progress bar) and partner templates. */
import fs from 'node:fs';
import { type Command, type Context, arg, enc, fields, integer, labelsOf, need, print, printItem } from './command.ts';

const ENDED = ['finished', 'failed', 'cancelled'];
const BAR_WIDTH = 30;

/** `[#########.....]  12/300 applied 10, failed 1, skipped 1 (running)`: what is done of a job. */
export function progressLine(job: any): string {
  const { total, applied, failed, skipped } = job.counts;
  const done = applied + failed + skipped;
  const filled = total === 0 ? BAR_WIDTH : Math.round((done / total) * BAR_WIDTH);
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${done}/${total} applied ${applied}, failed ${failed}, skipped ${skipped} (${job.state})`;
}

const summary = (j: any) => `${j.id}\t${j.name}\t${j.state}\t${j.counts.applied}/${j.counts.total} applied, ${j.counts.failed} failed, ${j.counts.skipped} skipped\t${j.created_at}`;
const failureLines = (j: any) => j.failures.map((f: any) => `  ${f.database_id} (${f.branch}): ${f.sqlstate ?? ''} ${f.error}`);

/** Polls the job until it has ended, drawing its progress bar (one line a change when not a terminal); exit 1 unless finished without failures. */
async function follow(ctx: Context, id: string): Promise<number> {
  const tty = process.stdout.isTTY && !ctx.v.json;
  let last = '';
  for (;;) {
    const job = await ctx.api.call('GET', `/v1/migrations/${enc(id)}`);
    const line = progressLine(job);
    if (line !== last) {
      if (tty) process.stdout.write(`\r${line}`);
      else if (!ctx.v.json) ctx.out(line);
      last = line;
    }
    if (ENDED.includes(job.state)) {
      if (tty) process.stdout.write('\n');
      print(ctx, job, () => [...(job.state_detail ? [job.state_detail] : []), ...failureLines(job)]);
      return job.state === 'finished' && job.counts.failed === 0 ? 0 : 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

function selectorOf(ctx: Context): Record<string, unknown> | undefined {
  const s: Record<string, unknown> = {};
  if (typeof ctx.v.region === 'string') s.region = ctx.v.region;
  if (typeof ctx.v.template === 'string') s.template = ctx.v.template;
  const labels = labelsOf(ctx);
  if (labels) s.labels = labels;
  if (typeof ctx.v.ids === 'string') s.ids = ctx.v.ids.split(',').filter(Boolean);
  if (ctx.v.templates) s.templates = true;
  return Object.keys(s).length ? s : undefined;
}

const control = (action: 'pause' | 'resume' | 'cancel', summaryText: string): Command => ({
  name: `migrations ${action}`, usage: '<migration id>', summary: summaryText,
  async run(ctx) {
    const job = await ctx.api.call('POST', `/v1/migrations/${enc(arg(ctx, 0, 'a migration id', `migrations ${action}`))}/${action}`);
    print(ctx, job, () => [progressLine(job)]);
  },
});

export const migrationCommands: Command[] = [
  {
    name: 'migrations create', usage: '--name <name> (--sql <SQL> | --file <file.sql>) [--region r] [--template t] [--label k=v,...] [--ids a,b] [--templates] [--concurrency n] [--max-failures n] [--dry-run] [--branches] [--wait]',
    summary: "run SQL in each selected database (one transaction, as its owner); --wait draws a progress bar until it ends",
    details: 'A name is applied at most once per database: databases that have it are skipped. Exit code with --wait: 0 when it finished without failures.',
    async run(ctx) {
      const name = need(ctx, 'name', 'migrations create');
      const sql = typeof ctx.v.file === 'string' ? fs.readFileSync(ctx.v.file, 'utf8') : need(ctx, 'sql', 'migrations create', '<SQL> (or --file)');
      const job = await ctx.api.call('POST', '/v1/migrations', {
        name, sql, selector: selectorOf(ctx), concurrency: integer(ctx, 'concurrency'), max_failures: integer(ctx, 'max-failures'),
        dry_run: ctx.v['dry-run'] === true ? true : undefined, branches: ctx.v.branches === true ? true : undefined,
      });
      if (ctx.v.wait) return follow(ctx, job.id);
      print(ctx, job, () => [job.id]);
    },
  },
  {
    name: 'migrations list', usage: '', summary: 'migration jobs, newest first: id, name, state, counts',
    async run(ctx) {
      const { migrations } = await ctx.api.call('GET', '/v1/migrations');
      for (const j of migrations) printItem(ctx, j, summary(j));
    },
  },
  {
    name: 'migrations show', usage: '<migration id> [--wait]', summary: 'a job: its progress and failures (--wait: follow it to its end)',
    async run(ctx) {
      const id = arg(ctx, 0, 'a migration id', 'migrations show');
      if (ctx.v.wait) return follow(ctx, id);
      const job = await ctx.api.call('GET', `/v1/migrations/${enc(id)}`);
      print(ctx, job, () => [progressLine(job), ...fields({ ...job, failures: undefined, counts: undefined, sql: undefined }).filter((l) => !l.endsWith(': undefined')), ...failureLines(job)]);
    },
  },
  {
    name: 'migrations databases', usage: '<migration id> [--state pending|applied|failed|skipped]', summary: 'the outcome per database',
    async run(ctx) {
      const id = arg(ctx, 0, 'a migration id', 'migrations databases');
      const state = typeof ctx.v.state === 'string' ? `?state=${enc(ctx.v.state)}` : '';
      const { databases } = await ctx.api.call('GET', `/v1/migrations/${enc(id)}/databases${state}`);
      for (const d of databases) printItem(ctx, d, `${d.database_id}\t${d.branch}\t${d.state}\t${d.duration_ms ?? '-'}\t${d.error ?? d.reason ?? ''}`);
    },
  },
  control('pause', 'pause a job (the databases under way finish)'),
  control('resume', 'resume a paused job where it was'),
  control('cancel', 'cancel a job: the databases it has not reached are skipped'),
  {
    name: 'templates create', usage: '<database id> --name <name> [--branch <branch>]', summary: 'a template: a copy of the database (or branch) as it is now',
    async run(ctx) {
      const t = await ctx.api.call('POST', '/v1/templates', { database_id: arg(ctx, 0, 'a database id', 'templates create'), name: need(ctx, 'name', 'templates create'), branch: ctx.v.branch });
      print(ctx, t, () => [t.id]);
    },
  },
  {
    name: 'templates list', usage: '', summary: "the partner's templates",
    async run(ctx) {
      const { templates } = await ctx.api.call('GET', '/v1/templates');
      for (const t of templates) printItem(ctx, t, `${t.id}\t${t.name}\t${t.region}\tpg${t.pg_version}\t${t.source_database_id}/${t.source_branch}\t${t.created_at}`);
    },
  },
  {
    name: 'templates delete', usage: '<template id>', summary: 'delete a template (databases made from it keep their data)',
    async run(ctx) {
      const id = arg(ctx, 0, 'a template id', 'templates delete');
      await ctx.api.call('DELETE', `/v1/templates/${enc(id)}`);
      print(ctx, { id, deleted: true }, () => [`deleted ${id}`]);
    },
  },
];
