/**
 * The `pgfleet` command: every capability of the API, one command each (api/cli/*.ts), with
 * `--help` per command and `--json` everywhere. The API URL and key come from --url/--key or
 * PGFLEET_API_URL/PGFLEET_API_KEY.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { branchCommands } from './cli/branches.ts';
import { type Command, client, cliVersion } from './cli/command.ts';
import { databaseCommands } from './cli/databases.ts';
import { sizeCommands } from './cli/sizes.ts';
import { eventCommands } from './cli/events.ts';
import { operatorCommands } from './cli/operator.ts';
import { migrationCommands } from './cli/migrations.ts';
import { CliError } from './cli-error.ts';

/** pgfleet's version, from its package.json. */
export const VERSION: string = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

const COMMANDS: Command[] = [...databaseCommands, ...sizeCommands, ...branchCommands, ...eventCommands, ...migrationCommands, ...operatorCommands];
const BY_NAME = new Map(COMMANDS.map((c) => [c.name, c]));

const STRINGS = [
  'url', 'key', 'field', 'name', 'user', 'region', 'parent', 'at', 'branch', 'pg-version', 'out', 'in', 'search', 'partner', 'suspend-timeout', 'retention',
  'pool-size', 'compute-units', 'role', 'ttl', 'compute-time', 'transfer', 'written', 'storage', 'max-connections', 'from', 'to', 'granularity',
  'expires-at', 'type', 'database', 'since', 'cursor', 'events', 'secret', 'description', 'state', 'action', 'target', 'key-id', 'result', 'limit',
  'seconds', 'timeout', 'issuer', 'audience', 'jwks-uri', 'jwks-file', 'user-claim', 'autoscaling', 'compute-unit-seconds',
  'sql', 'file', 'template', 'label', 'ids', 'concurrency', 'max-failures',
] as const;
const BOOLEANS = ['json', 'clean', 'follow', 'wait', 'dry-run', 'branches', 'templates'] as const;

const START = '  pgfleet start                      run the gateway in this directory (same as npm start; settings: environment variables, see README)';
const COMMON = `options of every command:
  --url <API URL>     (env PGFLEET_API_URL, default http://127.0.0.1:8080)
  --key <API key>     (env PGFLEET_API_KEY)
  --json              the API's answer as JSON (lists: one JSON object a line)
  --field <name>      one field of the answer only (pgfleet db create --user me --field connection_uri)
  --help, --version`;

const describe = (c: Command) => `  pgfleet ${c.name}${c.usage ? ` ${c.usage}` : ''}\n      ${c.summary}`;

export const USAGE = `usage:
${START}
${COMMANDS.map(describe).join('\n')}
${COMMON}
pgfleet <command> --help explains one command.
`;

/** The help of one command, or of every command of a group (`pgfleet db --help`). */
function helpFor(words: string[]): string | undefined {
  if (words[0] === 'start') return `usage:\n${START}\n`;
  const command = BY_NAME.get(words.slice(0, 2).join(' ')) ?? BY_NAME.get(words[0] ?? '');
  if (command) return `usage:\n${describe(command)}\n${command.details ? `\n${command.details}\n` : ''}\n${COMMON}\n`;
  const group = COMMANDS.filter((c) => c.name.split(' ')[0] === words[0]);
  return group.length ? `usage:\n${group.map(describe).join('\n')}\n${COMMON}\n` : undefined;
}

/** Runs one command; returns the exit code. */
export async function runCli(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...Object.fromEntries(STRINGS.map((s) => [s, { type: 'string' as const }])),
        ...Object.fromEntries(BOOLEANS.map((b) => [b, { type: 'boolean' as const }])),
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    process.stderr.write(`pgfleet: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { positionals } = parsed;
  const v = parsed.values as Record<string, string | boolean | undefined>;
  if (v.version) {
    out(`pgfleet ${VERSION}`);
    return 0;
  }
  // A bare `pgfleet` only prints this: starting a gateway takes `pgfleet start`.
  if (positionals.length === 0 || positionals[0] === 'help') {
    out(USAGE);
    return 0;
  }
  if (v.help) {
    const help = helpFor(positionals);
    out(help ?? USAGE);
    return help ? 0 : 2;
  }
  const two = positionals.slice(0, 2).join(' ');
  const command = BY_NAME.get(two) ?? BY_NAME.get(positionals[0]!);
  if (!command) {
    process.stderr.write(`pgfleet: unknown command "${positionals.join(' ')}"\n${USAGE}`);
    return 2;
  }
  const url = typeof v.url === 'string' ? v.url : process.env.PGFLEET_API_URL ?? 'http://127.0.0.1:8080';
  const api = client(url, typeof v.key === 'string' ? v.key : process.env.PGFLEET_API_KEY, cliVersion(VERSION));
  try {
    const args = positionals.slice(command.name.split(' ').length);
    return (await command.run({ api, args, v, out })) ?? 0;
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`pgfleet: ${err.message}\n`);
    return 1;
  }
}
