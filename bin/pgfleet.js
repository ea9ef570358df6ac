#!/usr/bin/env node
// The pgfleet command: `pgfleet start` runs the gateway; other commands talk to its API.
import cluster from 'node:cluster';
import './load-ts.mjs';

const args = process.argv.slice(2);
// `pgfleet start` runs the gateway; a bare `pgfleet` and `--help`/`--version` anywhere only print.
if (args[0] === 'start' && !args.some((a) => /^(-h|--help|-v|--version)$/.test(a))) {
  if (cluster.isWorker) {
    // A proxy worker forked by cluster/primary.ts (its config checked there): it loads only what a worker runs.
    const { runWorker } = await import('../cluster/worker.ts');
    const { loadConfig } = await import('../src/config.ts');
    await runWorker(loadConfig());
  } else {
    const { main } = await import('../main.ts');
    await main();
  }
} else {
  const { runCli } = await import('../api/cli.ts');
  process.exitCode = await runCli(args);
}
