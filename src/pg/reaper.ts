/**
 * pgfleet's side of the postmaster reaper (see reaper-process.ts): started at the first
 * postmaster, told of each one that starts and stops. Postgres has no option to exit when its
 * parent dies, and its children are detached from pgfleet's process group on purpose (a Ctrl-C
 * is pgfleet's to turn into a fast shutdown), so this process is what stops them after a kill -9.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

const REAPER = path.join(path.dirname(new URL(import.meta.url).pathname), 'reaper-process.ts');
const TS_LOADER = new URL('../../bin/load-ts.mjs', import.meta.url).href;

let reaper: ChildProcess | undefined;

function ensureReaper(): ChildProcess {
  if (reaper && !reaper.killed && reaper.exitCode === null) return reaper;
  // This node, with pgfleet's TypeScript loader (however this process loaded it).
  const child = spawn(process.execPath, ['--import', TS_LOADER, REAPER], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  child.on('error', () => {});
  child.stdin!.on('error', () => {});
  // Neither the process nor its pipe keeps pgfleet running; the pipe closes when pgfleet's process ends.
  child.unref();
  (child.stdin as unknown as { unref(): void }).unref();
  reaper = child;
  return child;
}

export function watchPostmaster(pid: number, pgdata: string): void {
  ensureReaper().stdin!.write(`add ${pid} ${pgdata}\n`);
}

export function forgetPostmaster(pid: number): void {
  reaper?.stdin?.write(`del ${pid}\n`);
}

/** The reaper's pid, once started (tests). */
export function reaperPid(): number | undefined {
  return reaper?.pid;
}
