/**
 * How nodes of one fleet talk: TLS 1.2 with a pre-shared key (ECDHE-PSK, no certificates), the
 * key derived from PGFLEET_SECRET_KEY that every gateway of the fleet is given. A tenant never
 * sees that key and cannot open the node listener; nothing tenant-facing listens there.
 *
 * On a connection the dialling node sends one JSON line (the request), the owning node answers
 * one JSON line (with a result for `branches`); for `connect` and `cancel` the socket then carries
 * the Postgres protocol between the dialling gateway and the compute's socket, byte for byte.
 */
import crypto from 'node:crypto';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { PgfleetError } from '../errors.ts';
import type { BranchCall } from '../branch-calls.ts';
import type { BranchRef } from '../providers/provider.ts';

export const NODE_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305:ECDHE-PSK-AES256-CBC-SHA384';
const MAX_LINE = 64 * 1024;

/**
 * What one node asks of the node that owns a branch's data: an operation on the branch as the
 * asking node routed it, or a branch lifecycle call (branch, restore, reset, delete) on a database.
 */
export type NodeRequest =
  | { op: 'connect' | 'cancel' | 'wake' | 'suspend' | 'delete' | 'sync-roles'; ref: BranchRef }
  | { op: 'branches'; call: BranchCall }
  | { op: 'drain' };

export type NodeReply = { ok: true; result?: unknown } | { ok: false; message: string; sqlstate: string; httpStatus: number; code: string };

/** An error the owning node answered with, passed on as it was. */
export class NodeError extends PgfleetError {}

/** The fleet's node key: HKDF of the secret key, so one variable serves both. */
export function nodeKey(secretKey: Buffer): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', secretKey, Buffer.alloc(0), 'pgfleet node link v1', 32));
}

/** The owning node cannot be reached: 57P03, naming the host. */
export function hostUnavailable(nodeId: string, why: string): PgfleetError {
  return new PgfleetError(`the database's host (node ${nodeId}) is unavailable: ${why}`, '57P03', 503, 'host_unavailable');
}

/** Reads one line; bytes after it are put back for the next reader. */
export function readLine(socket: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err?: Error, line?: string) => {
      socket.off('data', onData);
      socket.off('error', onEnd);
      socket.off('close', onEnd);
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > MAX_LINE) done(new Error('node link: line too long'));
        return;
      }
      socket.pause();
      const rest = buf.subarray(nl + 1);
      if (rest.length) socket.unshift(rest);
      done(undefined, buf.subarray(0, nl).toString('utf8'));
    };
    const onEnd = (err?: Error) => done(err instanceof Error ? err : new Error('node link closed'));
    socket.on('data', onData);
    socket.once('error', onEnd);
    socket.once('close', onEnd);
  });
}

export const writeLine = (socket: Duplex, value: unknown) => socket.write(`${JSON.stringify(value)}\n`);

/**
 * Sends a request to the node at `address` (host:port). Resolves with the socket once the node
 * said yes (for connect/cancel it then carries Postgres), rejects with the node's error, or
 * with 57P03 when the node cannot be reached.
 */
export async function dialNode(node: { id: string; address: string }, key: Buffer, from: string, request: NodeRequest, timeoutMs = 10_000): Promise<Duplex> {
  return (await exchange(node, key, from, request, timeoutMs)).socket;
}

/** Sends the request; resolves with the socket (paused) and the owning node's answer when it said yes. */
async function exchange(node: { id: string; address: string }, key: Buffer, from: string, request: NodeRequest, timeoutMs = 10_000): Promise<{ socket: Duplex; result: unknown }> {
  const i = node.address.lastIndexOf(':');
  const socket = tls.connect({
    host: node.address.slice(0, i),
    port: Number(node.address.slice(i + 1)),
    ciphers: NODE_CIPHERS,
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.2',
    pskCallback: () => ({ psk: key, identity: from }),
    checkServerIdentity: () => undefined,
  });
  socket.setNoDelay(true);
  const timer = setTimeout(() => socket.destroy(new Error('no answer in time')), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
  } catch (err) {
    clearTimeout(timer);
    socket.destroy();
    throw hostUnavailable(node.id, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }
  try {
    writeLine(socket, request);
    const reply = JSON.parse(await readLine(socket)) as NodeReply;
    if (!reply.ok) throw new NodeError(reply.message, reply.sqlstate, reply.httpStatus, reply.code);
    return { socket, result: reply.result }; // paused: the reader that takes it over resumes it
  } catch (err) {
    socket.destroy();
    if (err instanceof PgfleetError) throw err;
    throw hostUnavailable(node.id, (err as Error).message);
  } finally {
    clearTimeout(timer);
  }
}

/** A request whose whole answer is a result or an error (wake, suspend, delete, a branch call, ...). */
export async function askNode(node: { id: string; address: string }, key: Buffer, from: string, request: NodeRequest, timeoutMs?: number): Promise<unknown> {
  const { socket, result } = await exchange(node, key, from, request, timeoutMs);
  socket.destroy();
  return result;
}
