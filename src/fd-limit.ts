/**
 * The process's open-file limit (RLIMIT_NOFILE). Node has no setrlimit; it does raise the soft
 * limit to the hard one at start. Past that, root may raise the hard limit too: pgfleet asks
 * util-linux `prlimit` to set its own process's limit (prlimit(2) on our pid), up to
 * /proc/sys/fs/nr_open and at most RAISE_TO.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface FdLimit {
  soft: number;
  hard: number;
  /** What changed at start, for the start-up log line. */
  raisedFrom?: number;
}

const RAISE_TO = 1 << 20;

function readLimit(): { soft: number; hard: number } {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const m = line && /^Max open files\s+(\S+)\s+(\S+)/.exec(line);
  const num = (v: string) => (v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v));
  if (!m) return { soft: 1024, hard: 1024 };
  return { soft: num(m[1]!), hard: num(m[2]!) };
}

function readNrOpen(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()) || RAISE_TO;
  } catch {
    return RAISE_TO;
  }
}

let raised: FdLimit | undefined;

/** Raises the limit as far as this process may (once per process) and returns it. */
export function raiseFdLimit(): FdLimit {
  if (raised) return raised;
  const before = readLimit();
  const isRoot = process.getuid?.() === 0;
  const target = isRoot ? Math.max(before.hard, Math.min(readNrOpen(), RAISE_TO)) : before.hard;
  if (target > before.soft) {
    try {
      execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}:${Math.max(target, before.hard)}`], { stdio: 'pipe' });
    } catch {
      /* no prlimit, or not allowed: keep what we have */
    }
  }
  const after = readLimit();
  raised = after.soft > before.soft ? { ...after, raisedFrom: before.soft } : after;
  return raised;
}

/** Descriptors kept for everything but client connections: the API's connections, the catalog pool and logs, and each compute's own sockets. */
export function reservedFds(maxComputes: number, apiMaxConnections: number): number {
  return 64 + apiMaxConnections + 4 * maxComputes;
}

/**
 * The most client connections the proxy (with the serverless door) may hold: each relayed one
 * uses two descriptors (client and compute). With the node link (a fleet), it gets as many as the
 * proxy (each link session also holds two: the link and the compute), so each gets half.
 */
export function clientConnectionBudget(limit: FdLimit, reserve: { maxComputes: number; apiMaxConnections: number; nodeLink: boolean }): number {
  const left = Math.min(limit.soft, RAISE_TO) - reservedFds(reserve.maxComputes, reserve.apiMaxConnections);
  return Math.max(16, Math.floor(left / (reserve.nodeLink ? 4 : 2)));
}
