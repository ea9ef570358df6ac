/** `pgfleet branches` and `restore`: a database's branches and point-in-time restore. */
import { CliError } from '../cli-error.ts';
import { type Command, type Context, arg, enc, fields, need, print, printItem } from './command.ts';

const branchesPath = (ctx: Context, command: string) => `/v1/databases/${enc(arg(ctx, 0, 'a database id', command))}/branches`;
const branchPath = (ctx: Context, command: string) => `${branchesPath(ctx, command)}/${enc(arg(ctx, 1, 'a branch name', command))}`;

/** A branch in one line: its name, parent, state, expiry and the URI that connects to it. */
const line = (b: any) => `${b.name}\t${b.parent ?? '-'}\t${b.state}\t${b.expires_at ?? '-'}\t${b.connection_uri}`;

export const branchCommands: Command[] = [
  {
    name: 'branches create', usage: '<database id> --name <name> [--parent <branch>] [--at <time or LSN>] [--expires-at <time>]',
    summary: 'a branch (now, or as it was at --at) with its own endpoint; prints its connection URI (the database\'s passwords apply)',
    details: '--expires-at: an RFC 3339 time at most 30 days ahead; the branch and its compute are deleted then (CI and preview branches).',
    async run(ctx) {
      const name = need(ctx, 'name', 'branches create');
      const b = await ctx.api.call('POST', branchesPath(ctx, 'branches create'), { name, parent: ctx.v.parent, at: ctx.v.at, expires_at: ctx.v['expires-at'] });
      print(ctx, b, () => [b.connection_uri]);
    },
  },
  {
    name: 'branches list', usage: '<database id>', summary: 'its branches: name, parent, state, expiry and connection URI',
    async run(ctx) {
      const { branches } = await ctx.api.call('GET', branchesPath(ctx, 'branches list'));
      for (const b of branches) printItem(ctx, b, line(b));
    },
  },
  {
    name: 'branches show', usage: '<database id> <branch>', summary: 'one branch with every connection string',
    async run(ctx) {
      const b = await ctx.api.call('GET', branchPath(ctx, 'branches show'));
      print(ctx, b, () => fields(b));
    },
  },
  {
    name: 'branches rename', usage: '<database id> <branch> --name <new name>', summary: 'rename a branch',
    async run(ctx) {
      const b = await ctx.api.call('PATCH', branchPath(ctx, 'branches rename'), { name: need(ctx, 'name', 'branches rename') });
      print(ctx, b, () => [line(b)]);
    },
  },
  {
    name: 'branches expire', usage: '<database id> <branch> --at <time>|never', summary: 'when the branch is deleted (never: it stays)',
    async run(ctx) {
      const at = need(ctx, 'at', 'branches expire', '<RFC 3339 time> or never');
      const b = await ctx.api.call('PATCH', branchPath(ctx, 'branches expire'), { expires_at: at === 'never' ? null : at });
      print(ctx, b, () => [line(b)]);
    },
  },
  {
    name: 'branches reset', usage: '<database id> <branch>', summary: 'the branch becomes a copy of its parent now (its sessions end)',
    async run(ctx) {
      const b = await ctx.api.call('POST', `${branchPath(ctx, 'branches reset')}/reset`);
      print(ctx, b, () => [`reset ${b.name}`]);
    },
  },
  {
    name: 'branches delete', usage: '<database id> <branch>', summary: 'delete a branch with its compute and data',
    async run(ctx) {
      const name = arg(ctx, 1, 'a branch name', 'branches delete');
      await ctx.api.call('DELETE', branchPath(ctx, 'branches delete'));
      print(ctx, { name, deleted: true }, () => [`deleted ${name}`]);
    },
  },
  {
    name: 'restore', usage: '<database id> --at <time or LSN> [--branch <branch>]',
    summary: 'rewind a branch (default main) to --at; its state before is kept as a branch',
    async run(ctx) {
      const id = arg(ctx, 0, 'a database id', 'restore');
      if (typeof ctx.v.at !== 'string') throw new CliError('restore needs --at <RFC 3339 time or LSN>');
      const r = await ctx.api.call('POST', `/v1/databases/${enc(id)}/restore`, { at: ctx.v.at, branch: ctx.v.branch });
      print(ctx, r, () => [`restored ${r.branch.name} to ${ctx.v.at}; the state before is branch ${r.before.name}`]);
    },
  },
];
