/**
 * The postmaster reaper: a small process pgfleet starts once, in its own session (so signals
 * to pgfleet's process group do not reach it). pgfleet tells it over a pipe (its stdin) which
 * postmasters it runs: `add <pid> <pgdata>` and `del <pid>`. When the pipe ends, pgfleet is gone
 * (however it went, kill -9 included) and every postmaster still listed gets a fast shutdown
 * (SIGINT), then SIGQUIT if it has not stopped in 30 s. A pid is only signalled while it is
 * still a process whose working directory is that data directory (no reused pid is hit).
 */
import fs from 'node:fs';
import readline from 'node:readline';

const FAST_SHUTDOWN_MS = 30_000;
const listed = new Map<number, string>();

function isPostmasterOf(pid: number, pgdata: string): boolean {
  try {
    return fs.realpathSync(`/proc/${pid}/cwd`) === fs.realpathSync(pgdata);
  } catch {
    return false;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    /* already gone */
  }
}

async function stopAll(): Promise<void> {
  const targets = [...listed].filter(([pid, pgdata]) => isPostmasterOf(pid, pgdata));
  for (const [pid] of targets) signal(pid, 'SIGINT');
  const deadline = Date.now() + FAST_SHUTDOWN_MS;
  let left = targets;
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    left = left.filter(([pid, pgdata]) => isPostmasterOf(pid, pgdata));
  }
  for (const [pid] of left) signal(pid, 'SIGQUIT');
}

// Signals meant for pgfleet's terminal or group are not ours: only the pipe's end is.
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => {});

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [verb, pid, ...rest] = line.split(' ');
  if (verb === 'add' && pid) listed.set(Number(pid), rest.join(' '));
  else if (verb === 'del' && pid) listed.delete(Number(pid));
});
lines.on('close', () => {
  stopAll().then(() => process.exit(0), () => process.exit(1));
});
