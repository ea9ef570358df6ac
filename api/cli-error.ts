/** A failure the `pgfleet` command reports in one line (exit code 1), not as a crash. */
export class CliError extends Error {}
