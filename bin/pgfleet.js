#!/usr/bin/env node
// The pgfleet command: `pgfleet start` runs the gateway; other commands talk to its API.
import './load-ts.mjs';

const args = process.argv.slice(2);
// `pgfleet start` runs the gateway; a bare `pgfleet` and `--help`/`--version` anywhere only print.
if (args[0] === 'start' && !args.some((a) => /^(-h|--help|-v|--version)$/.test(a))) {
  const { main } = await import('../main.ts');
  await main();
} else {
  const { runCli } = await import('../api/cli.ts');
  process.exitCode = await runCli(args);
}
