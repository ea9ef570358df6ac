/**
 * One proxy worker of `pgfleet start` (cluster/primary.ts): the proxy and the serverless door on
 * the shared ports, over a core of leases and coordination from the primary. It ends when the
 * primary says so, or when the primary is gone (the IPC channel closes).
 */
import { startProxy } from '../proxy/server.ts';
import type { Config } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { IpcPeer } from '../src/workers/ipc.ts';
import { type WorkerStart, startWorkerCore } from '../src/workers/worker-core.ts';

export async function runWorker(config: Config): Promise<void> {
  const index = Number(process.env.PGFLEET_WORKER_INDEX);
  const log = createLogger(config.logLevel, config.logFormat).child({ worker: index });
  const peer = new IpcPeer(process as unknown as { send(m: unknown): unknown; on(e: 'message', l: (m: unknown) => void): unknown }, '');
  // The primary answers once its core is up; when the core fails to start, the primary says why and this worker just goes.
  const start = await peer.call<WorkerStart>('worker.hello').catch(() => process.exit(1));
  peer.id = `${start.nodeId}.w${start.index}`;
  const core = await startWorkerCore(config, log, peer, start);
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (code: number) => (stopping ??= (async () => {
    await proxy?.close().catch((err) => log.error({ err }, 'proxy close failed'));
    await core.stop().catch((err) => log.error({ err }, 'worker stop failed'));
    process.exit(code);
  })());
  peer.onNote('worker.stop', () => void stop(0));
  process.on('disconnect', () => void stop(0));
  // Signals go to the whole process group: the primary decides when its workers stop.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {});
  try {
    proxy = await startProxy(core, { port: start.proxyPort, httpPort: start.httpPort });
  } catch (err) {
    // A port in use, say: the primary reports it as `pgfleet start` alone would, and stops this worker.
    const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
    peer.notify('worker.failed', { message: e.message, code: e.code, port: e.port, address: e.address });
    return;
  }
  peer.handle('metrics.json', () => core.metrics.registry.getMetricsAsJSON());
  peer.notify('worker.ready', { port: proxy.port, httpPort: proxy.httpPort });
  log.info({ pid: process.pid, proxy_port: proxy.port }, 'proxy worker ready');
}
