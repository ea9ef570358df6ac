/** The API's command-line client; commands arrive with the provisioning API. */
export async function runCli(argv: string[]): Promise<number> {
  process.stderr.write(`pgfleet: unknown command "${argv.join(' ')}"; try: pgfleet start\n`);
  return 2;
}
