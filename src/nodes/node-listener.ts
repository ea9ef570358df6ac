/**
 * This node's side of the node link: other gateways of the fleet ask it to run, reach, wake,
 * suspend, create or delete the computes of databases whose data lives here, and to branch,
 * restore and reset them.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Catalog } from '../catalog/catalog.ts';
import { type BranchRoute, routeByBranch } from '../catalog/routes.ts';
import type { ComputeManager } from '../computes.ts';
import type { ComputeTarget, Lease } from '../compute-target.ts';
import type { Branches } from '../branches.ts';
import type { Drainer } from './drain.ts';
import { NotFoundError, PgfleetError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { LocalProvider } from '../providers/local/local-provider.ts';
import type { BranchRef, ComputeAddress } from '../providers/provider.ts';
import { type NodeLinkLimits, guardNodeLink } from './node-link-guard.ts';
import { NODE_CIPHERS, type NodeReply, type NodeRequest, readLine, writeLine } from './node-link.ts';

export interface NodeListenerDeps {
  catalog: Catalog;
  computes: ComputeManager;
  local: LocalProvider;
  targetFor(route: BranchRoute): ComputeTarget;
  branches: Branches;
  drainer: Drainer;
  key: Buffer;
  log: Logger;
  limits: NodeLinkLimits;
}

export interface NodeListener {
  port: number;
  close(): Promise<void>;
}

function replyOf(err: unknown): NodeReply {
  if (err instanceof PgfleetError) return { ok: false, message: err.message, sqlstate: err.sqlstate, httpStatus: err.httpStatus, code: err.code };
  return { ok: false, message: 'the owning node failed', sqlstate: 'XX000', httpStatus: 500, code: 'internal' };
}

/** Pipes the dialling gateway to the compute's socket until either side goes. */
function pipeTo(socket: Duplex, address: ComputeAddress): Promise<void> {
  if (address.kind !== 'unix') throw new Error('a node only serves its local computes');
  return new Promise((resolve, reject) => {
    const compute = net.connect(address.socketPath);
    compute.once('error', reject);
    compute.once('connect', () => {
      compute.off('error', reject);
      const end = () => {
        socket.destroy();
        compute.destroy();
        resolve();
      };
      compute.on('error', end).on('close', end);
      socket.on('error', end).on('close', end);
      writeLine(socket, { ok: true } satisfies NodeReply);
      socket.pipe(compute);
      compute.pipe(socket);
    });
  });
}

export async function startNodeListener(deps: NodeListenerDeps, host: string, port: number): Promise<NodeListener> {
  const { catalog, computes, local, log } = deps;
  const open = new Set<Duplex>();

  const route = async (ref: BranchRef): Promise<BranchRoute> => {
    const r = await routeByBranch(catalog, ref.branchId);
    if (!r) throw new NotFoundError(`branch "${ref.branchId}" not found`);
    return r;
  };

  const serve = async (socket: tls.TLSSocket) => {
    const timer = setTimeout(() => socket.destroy(), deps.limits.timeoutMs); // to send its request line
    let lease: Lease | undefined;
    try {
      const request = JSON.parse(await readLine(socket)) as NodeRequest;
      clearTimeout(timer); // the request is in: a wake may take up to the wake timeout
      if (request.op === 'branches' || request.op === 'drain') {
        const result = request.op === 'branches' ? await deps.branches.call(request.call) : await deps.drainer.start();
        writeLine(socket, { ok: true, result } satisfies NodeReply);
        socket.end();
        return;
      }
      const ref = request.ref;
      switch (request.op) {
        case 'connect': {
          lease = await computes.acquire(deps.targetFor(await route(ref)));
          await pipeTo(socket, lease.address);
          return;
        }
        case 'cancel': {
          const address = computes.runningAddress(ref.branchId);
          if (!address) throw new NotFoundError('the compute is not running');
          await pipeTo(socket, address);
          return;
        }
        case 'wake':
          await computes.wake(deps.targetFor(await route(ref)));
          break;
        case 'suspend':
          await computes.suspend(ref.branchId);
          break;
        case 'sync-roles':
          await local.syncRoles(ref);
          break;
        case 'delete':
          await computes.remove(ref.branchId);
          await local.delete(ref);
          break;
        default:
          throw new PgfleetError('unknown node request', '08P01', 400, 'bad_request');
      }
      writeLine(socket, { ok: true } satisfies NodeReply);
      socket.end();
    } catch (err) {
      if (!(err instanceof PgfleetError)) log.warn({ err: (err as Error).message }, 'node request failed');
      if (socket.writable) socket.end(`${JSON.stringify(replyOf(err))}\n`);
    } finally {
      clearTimeout(timer);
      lease?.release();
    }
  };

  const server = tls.createServer({
    ciphers: NODE_CIPHERS,
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.2',
    pskIdentityHint: 'pgfleet-node',
    pskCallback: (_socket, _identity) => deps.key,
    handshakeTimeout: deps.limits.timeoutMs,
  }, (socket) => {
    open.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.once('close', () => open.delete(socket));
    void serve(socket);
  });
  // A peer without the fleet's key, or one that did not finish its handshake in time: closed, nothing else.
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  guardNodeLink(server, deps.limits);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      await closed;
    },
  };
}
