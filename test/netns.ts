/**
 * A second machine on this host: a network namespace joined to this one by a veth pair, with
 * its own /etc/hosts and /etc/ssl (`ip netns exec` binds /etc/netns/<name>/* over /etc), so a
 * client there resolves and trusts what the test says, and nothing else. Needs root.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileAsync } from './proxy-helpers.ts';

export interface SecondMachine {
  name: string;
  /** This host's address on the link (listen here to be reached from the namespace). */
  hostAddress: string;
  /** Writes /etc/<file> as the namespace sees it. */
  etc(file: string, content: string | Buffer): void;
  /** The command line that runs `argv` in the namespace; `hide` mounts an empty directory over these paths first. */
  argv(argv: string[], hide?: string[]): [string, string[]];
  run(argv: string[], opts?: { env?: Record<string, string>; cwd?: string; hide?: string[] }): Promise<string>;
  close(): Promise<void>;
}

const ip = (...args: string[]) => execFileAsync('ip', args);

/** This host's pointers at its own CA bundle: another machine has its own (its /etc/ssl), not these. */
const HOST_TRUST = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'NIX_SSL_CERT_FILE'];
const machineEnv = (extra: Record<string, string> = {}) =>
  ({ ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !HOST_TRUST.includes(k))), ...extra });

export async function secondMachine(): Promise<SecondMachine> {
  const id = crypto.randomBytes(3).toString('hex');
  const name = `pgf-${id}`;
  const [outside, inside] = [`pgf${id}a`, `pgf${id}b`];
  // A /30 of 10.213.0.0/16 chosen at random, so that concurrent runs do not meet.
  const block = crypto.randomInt(0, 16384) * 4;
  const address = (n: number) => `10.213.${block >> 8}.${(block & 255) + n}`;
  const etcDir = path.join('/etc/netns', name);
  fs.mkdirSync(etcDir, { recursive: true });
  await ip('netns', 'add', name);
  const machine: SecondMachine = {
    name,
    hostAddress: address(1),
    etc(file, content) {
      fs.mkdirSync(path.dirname(path.join(etcDir, file)), { recursive: true });
      fs.writeFileSync(path.join(etcDir, file), content);
    },
    argv(argv, hide = []) {
      if (hide.length === 0) return ['ip', ['netns', 'exec', name, ...argv]];
      const mounts = hide.map((_, i) => `mount -t tmpfs hidden "\${${i + 1}}"`).join(' && ');
      return ['ip', ['netns', 'exec', name, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c',
        `${mounts} && shift ${hide.length} && exec "$@"`, 'sh', ...hide, ...argv]];
    },
    async run(argv, opts = {}) {
      const [cmd, args] = machine.argv(argv, opts.hide);
      const { stdout } = await execFileAsync(cmd, args, { env: machineEnv(opts.env), cwd: opts.cwd, maxBuffer: 16 * 1024 * 1024 });
      return stdout.trim();
    },
    async close() {
      await ip('netns', 'del', name).catch(() => {});
      await ip('link', 'del', outside).catch(() => {}); // gone with its peer, normally
      fs.rmSync(etcDir, { recursive: true, force: true });
    },
  };
  try {
    await ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
    await ip('link', 'set', inside, 'netns', name);
    await ip('addr', 'add', `${address(1)}/30`, 'dev', outside);
    await ip('link', 'set', outside, 'up');
    await ip('netns', 'exec', name, 'ip', 'addr', 'add', `${address(2)}/30`, 'dev', inside);
    await ip('netns', 'exec', name, 'ip', 'link', 'set', inside, 'up');
    await ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
    machine.etc('hosts', '127.0.0.1 localhost\n::1 localhost\n');
  } catch (err) {
    await machine.close();
    throw err;
  }
  return machine;
}
