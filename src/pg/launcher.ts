/**
 * pgfleet's side of the postmaster launcher (see launcher-process.ts): every postmaster is started
 * by that small process, so that the fork does not copy the gateway's memory map or stall its
 * event loop, and so that the postmasters stop when pgfleet dies. Postgres has no option to exit
 * when its parent dies, and it runs in a process group of its own on purpose (a Ctrl-C is
 * pgfleet's to turn into a fast shutdown).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

export type LauncherRequest =
  | { op: 'spawn'; id: number; file: string; args: string[]; uid?: number; gid?: number; env: Record<string, string | undefined>; logFile: string }
  | { op: 'signal'; pid: number; signal: NodeJS.Signals };

export type LauncherReply =
  | { id: number; pid: number }
  | { id: number; error: string }
  | { exit: number; code: number | null; signal: NodeJS.Signals | null };

type SpawnSpec = Omit<Extract<LauncherRequest, { op: 'spawn' }>, 'op' | 'id'>;

const LAUNCHER = path.join(path.dirname(new URL(import.meta.url).pathname), 'launcher-process.ts');
const TS_LOADER = new URL('../../bin/load-ts.mjs', import.meta.url).href;
/** How often a postmaster whose launcher died is looked for (it is init's child then). */
const ORPHAN_POLL_MS = 500;

/**
 * A postmaster the launcher started, shaped as much like a ChildProcess as pgfleet uses one:
 * 'spawn' once it runs (pid set), 'error' if it could not start, 'exit' (code, signal) when it ends.
 */
export class LaunchedProcess extends EventEmitter {
  pid: number | undefined;
  private orphanPoll: NodeJS.Timeout | undefined;
  /** A signal sent before the launcher answered with the pid (a start that timed out meanwhile). */
  private signalOnSpawn: NodeJS.Signals | undefined;

  constructor(
    private readonly launcher: Launcher,
    /** Its data directory, which is a postmaster's working directory: how a reused pid is told apart. */
    private readonly pgdata: string,
  ) {
    super();
  }

  kill(signal: NodeJS.Signals): void {
    if (this.pid === undefined) {
      this.signalOnSpawn = signal;
      return;
    }
    // Through the launcher while it holds the process: a pid it has not reaped cannot have been reused.
    if (this.launcher.alive) this.launcher.send({ op: 'signal', pid: this.pid, signal });
    else if (this.isOurs()) {
      try {
        process.kill(this.pid, signal);
      } catch {
        /* it ended meanwhile: the poll reports it */
      }
    }
  }

  private isOurs(): boolean {
    try {
      return this.pid !== undefined && fs.realpathSync(`/proc/${this.pid}/cwd`) === fs.realpathSync(this.pgdata);
    } catch {
      return false;
    }
  }

  spawned(pid: number): void {
    this.pid = pid;
    this.emit('spawn');
    if (this.signalOnSpawn) this.kill(this.signalOnSpawn);
  }

  /** The launcher is gone and this postmaster lives on under init: its end is found by looking. */
  orphaned(): void {
    this.orphanPoll = setInterval(() => {
      if (!this.isOurs()) this.exited(null, null);
    }, ORPHAN_POLL_MS);
    this.orphanPoll.unref();
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    clearInterval(this.orphanPoll);
    this.emit('exit', code, signal);
  }
}

class Launcher {
  private readonly child: ChildProcess;
  private readonly starting = new Map<number, LaunchedProcess>();
  private readonly running = new Map<number, LaunchedProcess>();
  private nextId = 1;
  alive = true;

  constructor() {
    // This node, with pgfleet's TypeScript loader (however this process loaded it).
    this.child = spawn(process.execPath, ['--import', TS_LOADER, LAUNCHER], { detached: true, stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.on('error', () => this.gone());
    this.child.on('exit', () => this.gone());
    this.child.stdin!.on('error', () => {});
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let reply: LauncherReply;
      try {
        reply = JSON.parse(line) as LauncherReply;
      } catch {
        return;
      }
      this.onReply(reply);
    });
    // Neither the process nor its pipes keep pgfleet running; the pipe closes when pgfleet's process ends.
    this.child.unref();
    for (const pipe of [this.child.stdin, this.child.stdout]) (pipe as unknown as { unref(): void }).unref();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  send(request: LauncherRequest): void {
    this.child.stdin!.write(`${JSON.stringify(request)}\n`);
  }

  launch(spec: SpawnSpec, pgdata: string): LaunchedProcess {
    const launched = new LaunchedProcess(this, pgdata);
    const id = this.nextId++;
    this.starting.set(id, launched);
    this.send({ op: 'spawn', id, ...spec });
    return launched;
  }

  private onReply(reply: LauncherReply): void {
    if ('exit' in reply) {
      const launched = this.running.get(reply.exit);
      this.running.delete(reply.exit);
      launched?.exited(reply.code, reply.signal);
      return;
    }
    const launched = this.starting.get(reply.id);
    this.starting.delete(reply.id);
    if (!launched) return;
    if ('error' in reply) {
      launched.emit('error', new Error(`postgres could not be started: ${reply.error}`));
      return;
    }
    this.running.set(reply.pid, launched);
    launched.spawned(reply.pid);
  }

  private gone(): void {
    if (!this.alive) return;
    this.alive = false;
    if (launcher === this) launcher = undefined;
    for (const launched of this.starting.values()) launched.emit('error', new Error('the postmaster launcher exited'));
    this.starting.clear();
    for (const launched of this.running.values()) launched.orphaned();
    this.running.clear();
  }
}

let launcher: Launcher | undefined;

function ensureLauncher(): Launcher {
  launcher ??= new Launcher();
  return launcher;
}

/** Starts the launcher ahead of the first postmaster, so that a first wake does not wait for it. */
export function startLauncher(): void {
  ensureLauncher();
}

/** Starts the postmaster of pgdata (detached, stdout and stderr appended to logFile) through the launcher. */
export function launchPostmaster(spec: SpawnSpec, pgdata: string): LaunchedProcess {
  return ensureLauncher().launch(spec, pgdata);
}

/** The launcher's pid, once started (tests). */
export function launcherPid(): number | undefined {
  return launcher?.pid;
}
