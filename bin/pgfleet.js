#!/usr/bin/env node
// The pgfleet command: `pgfleet start` runs the gateway; other commands talk to its API.
import { register } from 'tsx/esm/api';

register();
const [command] = process.argv.slice(2);
if (command === 'start' || command === undefined) {
  const { main } = await import('../main.ts');
  await main();
} else {
  const { runCli } = await import('../api/cli.ts');
  process.exitCode = await runCli(process.argv.slice(2));
}
