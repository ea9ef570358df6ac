/**
 * How a client proves it may use a role. With the endpoint known before auth: SCRAM
 * (with channel binding over TLS). With the endpoint in the password prefix: a cleartext
 * password over TLS, checked against the same verifier. A JWT-as-password method belongs
 * in checkPassword, beside the verifier check.
 */
import type { BranchRoute } from '../src/catalog/routes.ts';
import { AuthFailed } from './errors.ts';
import { authenticationCleartextPassword, parsePassword } from './messages.ts';
import { type AuthIO, passwordMatches, scramServer } from './scram.ts';

/** Asks for a cleartext password (only ever over TLS). */
export async function readCleartextPassword(io: AuthIO): Promise<string> {
  io.send(authenticationCleartextPassword());
  return parsePassword(await io.read('PasswordMessage'));
}

/** Checks a cleartext password for `role` of the routed branch; throws AuthFailed. */
export async function checkPassword(route: BranchRoute, role: string, password: string): Promise<void> {
  if (!(await passwordMatches(route.verifiers.get(role), password))) throw new AuthFailed(role);
}

/** The SCRAM exchange for `role` of the routed branch; throws AuthFailed. */
export function scramAuth(io: AuthIO, route: BranchRoute, role: string, channelBinding: Buffer | undefined): Promise<void> {
  return scramServer(io, role, route.verifiers.get(role), channelBinding);
}
