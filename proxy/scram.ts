/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as a server, with SCRAM-SHA-256-PLUS channel binding
 * of type tls-server-end-point (RFC 5929), checked against a stored verifier.
 */
import crypto from 'node:crypto';
import { type ScramVerifier, hmac, matchesVerifier, parseScramVerifier, sha256 } from '../src/scram-verifier.ts';
import { AuthFailed, ProtocolViolation } from './errors.ts';
import { authenticationSASL, authenticationSASLContinue, authenticationSASLFinal, parseSASLInitialResponse } from './protocol/messages.ts';

export const SCRAM = 'SCRAM-SHA-256';
export const SCRAM_PLUS = 'SCRAM-SHA-256-PLUS';
const CHANNEL_BINDING_TYPE = 'tls-server-end-point';

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}
export const nonce = () => crypto.randomBytes(18).toString('base64');

/** Splits `k=v,k=v` SCRAM attributes, keeping their order. */
export function attributes(text: string): [string, string][] {
  return text.split(',').map((part) => {
    if (!/^[a-zA-Z]=/.test(part)) throw new ProtocolViolation('malformed SCRAM message');
    return [part[0]!, part.slice(2)];
  });
}

/** The client side of the auth exchange as the server sees it. */
export interface AuthIO {
  send(message: Buffer): void;
  /** The body of the client's next password-type ('p') message. */
  read(what: string): Promise<Buffer>;
}

// Unknown roles go through a full exchange with a made-up verifier, so that they look like
// a wrong password. Its salt is stable per role name, as in Postgres.
const mockSecret = crypto.randomBytes(32);
function mockVerifier(role: string): ScramVerifier {
  return { iterations: 4096, salt: hmac(mockSecret, `salt:${role}`).subarray(0, 16), storedKey: crypto.randomBytes(32), serverKey: crypto.randomBytes(32) };
}

interface ClientFirst {
  gs2Header: string;
  bare: string;
  clientNonce: string;
  binds: boolean;
}

function parseClientFirst(data: string, mechanism: string, channelBindingOffered: boolean): ClientFirst {
  const m = /^(n|y|p=([^,]*)),([^,]*),(.*)$/s.exec(data);
  if (!m) throw new ProtocolViolation('malformed SCRAM client-first-message');
  const flag = m[1]!;
  if (m[3] !== '') throw new ProtocolViolation('SCRAM authorization identities are not supported');
  if (flag.startsWith('p=')) {
    if (mechanism !== SCRAM_PLUS) throw new ProtocolViolation('channel binding requested with SCRAM-SHA-256; use SCRAM-SHA-256-PLUS');
    if (m[2] !== CHANNEL_BINDING_TYPE) throw new ProtocolViolation(`unsupported SCRAM channel-binding type "${m[2]}"`);
  } else if (mechanism === SCRAM_PLUS) {
    throw new ProtocolViolation('SCRAM-SHA-256-PLUS selected without channel binding');
  } else if (flag === 'y' && channelBindingOffered) {
    // The client could bind but thinks the server cannot: the mechanism list was tampered with.
    throw new ProtocolViolation('SCRAM channel binding negotiation error');
  }
  const bare = m[4]!;
  const attrs = attributes(bare);
  if (attrs[0]?.[0] !== 'n' || attrs[1]?.[0] !== 'r' || !/^[\x21-\x2b\x2d-\x7e]+$/.test(attrs[1][1])) {
    throw new ProtocolViolation('malformed SCRAM client-first-message');
  }
  if (attrs.some(([k]) => k === 'm')) throw new ProtocolViolation('SCRAM mandatory extensions are not supported');
  return { gs2Header: `${m[1]},${m[3]},`, bare, clientNonce: attrs[1][1], binds: flag.startsWith('p=') };
}

/**
 * Runs the exchange for `role`. `channelBinding` is the tls-server-end-point hash when the
 * connection is TLS (then SCRAM-SHA-256-PLUS is offered too). Resolves when the client
 * proved it knows the password, with the AuthenticationSASLFinal for the caller to send ahead of
 * AuthenticationOk in one write, as Postgres does; a wrong proof or an unknown role throws AuthFailed.
 */
export async function scramServer(io: AuthIO, role: string, verifierText: string | undefined, channelBinding: Buffer | undefined): Promise<Buffer> {
  const verifier = (verifierText !== undefined && parseScramVerifier(verifierText)) || mockVerifier(role);
  io.send(authenticationSASL(channelBinding ? [SCRAM_PLUS, SCRAM] : [SCRAM]));

  const initial = parseSASLInitialResponse(await io.read('SASLInitialResponse'));
  if (initial.mechanism !== SCRAM && !(initial.mechanism === SCRAM_PLUS && channelBinding)) {
    throw new ProtocolViolation(`client selected an invalid SASL authentication mechanism`);
  }
  const first = parseClientFirst(initial.data, initial.mechanism, channelBinding !== undefined);
  const combinedNonce = first.clientNonce + nonce();
  const serverFirst = `r=${combinedNonce},s=${verifier.salt.toString('base64')},i=${verifier.iterations}`;
  io.send(authenticationSASLContinue(serverFirst));

  const final = (await io.read('SASLResponse')).toString('utf8');
  const proofAt = final.lastIndexOf(',p=');
  if (proofAt < 0) throw new ProtocolViolation('malformed SCRAM client-final-message');
  const withoutProof = final.slice(0, proofAt);
  const attrs = attributes(withoutProof);
  const expectedBinding = Buffer.concat([Buffer.from(first.gs2Header), first.binds ? channelBinding! : Buffer.alloc(0)]).toString('base64');
  if (attrs[0]?.[0] !== 'c' || attrs[1]?.[0] !== 'r') throw new ProtocolViolation('malformed SCRAM client-final-message');
  if (attrs[0][1] !== expectedBinding) throw new ProtocolViolation('SCRAM channel binding check failed');
  if (attrs[1][1] !== combinedNonce) throw new ProtocolViolation('SCRAM nonce mismatch');
  const proof = Buffer.from(final.slice(proofAt + 3), 'base64');
  if (proof.length !== 32) throw new ProtocolViolation('malformed SCRAM proof');

  const authMessage = `${first.bare},${serverFirst},${withoutProof}`;
  const clientKey = xor(proof, hmac(verifier.storedKey, authMessage));
  const matches = crypto.timingSafeEqual(sha256(clientKey), verifier.storedKey);
  if (verifierText === undefined) throw new AuthFailed(role, 'unknown_role');
  if (!matches) throw new AuthFailed(role, 'wrong_password');
  return authenticationSASLFinal(`v=${hmac(verifier.serverKey, authMessage).toString('base64')}`);
}

/** Whether a cleartext password matches a stored SCRAM verifier (an unknown role costs the same). */
export async function passwordMatches(verifierText: string | undefined, password: string): Promise<boolean> {
  const verifier = verifierText === undefined ? undefined : parseScramVerifier(verifierText);
  return (await matchesVerifier(verifier ?? mockVerifier(''), password)) && verifier !== undefined;
}
