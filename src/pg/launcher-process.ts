/**
 * The postmaster launcher: a small process pgfleet starts once, in its own session, that starts
 * every postmaster for it and stops them when pgfleet is gone.
 *
 * Why a process of its own: Node forks to spawn, and a fork copies the page tables of the process
 * that forks and blocks its event loop until the child has exec'd: 12 to 40 ms for a gateway of
 * 150 MB on a busy host, during which no session is relayed. From this process it costs a few ms,
 * and not on the gateway's loop.
 *
 * Over its stdin, one JSON line per request (see launcher.ts): `spawn` (answered with the pid, or
 * an error) and `signal`. Over its stdout: those answers, and `exit` when a postmaster ends. When
 * its stdin ends, pgfleet is gone (however it went, kill -9 included): every postmaster still
 * running gets a fast shutdown (SIGINT), then SIGQUIT if it has not stopped in 30 s.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import type { LauncherReply, LauncherRequest } from './launcher.ts';

const FAST_SHUTDOWN_MS = 30_000;
const running = new Map<number, ChildProcess>();

function reply(message: LauncherReply): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function start(request: Extract<LauncherRequest, { op: 'spawn' }>): void {
  let logFd: number | undefined;
  try {
    logFd = fs.openSync(request.logFile, 'a', 0o600);
    if (request.uid !== undefined && request.gid !== undefined) fs.fchownSync(logFd, request.uid, request.gid);
    const child = spawn(request.file, request.args, {
      uid: request.uid, gid: request.gid, env: request.env,
      stdio: ['ignore', logFd, logFd],
      detached: true, // its own process group: a Ctrl-C at pgfleet's terminal is pgfleet's to relay, not its
    });
    child.once('error', (err) => reply({ id: request.id, error: err.message }));
    child.once('spawn', () => {
      running.set(child.pid!, child);
      reply({ id: request.id, pid: child.pid! });
    });
    child.once('exit', (code, signal) => {
      if (child.pid !== undefined && running.delete(child.pid)) reply({ exit: child.pid, code, signal });
    });
  } catch (err) {
    reply({ id: request.id, error: (err as Error).message });
  } finally {
    if (logFd !== undefined) fs.closeSync(logFd);
  }
}

async function stopAll(): Promise<void> {
  const children = [...running.values()];
  for (const child of children) child.kill('SIGINT');
  const timer = setTimeout(() => {
    for (const child of running.values()) child.kill('SIGQUIT');
  }, FAST_SHUTDOWN_MS);
  await Promise.all(children.map((child) => (child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((r) => child.once('exit', r)))));
  clearTimeout(timer);
}

// Signals meant for pgfleet's terminal or group are not ours: only the pipe's end is.
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => {});
// A reply that cannot be written (pgfleet is gone) changes nothing: stdin's end stops everything.
process.stdout.on('error', () => {});

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let request: LauncherRequest;
  try {
    request = JSON.parse(line) as LauncherRequest;
  } catch {
    return;
  }
  if (request.op === 'spawn') start(request);
  else if (request.op === 'signal') running.get(request.pid)?.kill(request.signal);
});
lines.on('close', () => {
  stopAll().then(() => process.exit(0), () => process.exit(1));
});
