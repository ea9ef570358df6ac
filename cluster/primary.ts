/**
 * `pgfleet start` with PGFLEET_WORKERS ≥ 1: this process (the primary) runs the core, which must
 * be single on a node (compute lifecycle, wakes, suspends, upkeep, background tasks), and the API;
 * N proxy workers (node:cluster, SCHED_NONE: the listening sockets are shared and the kernel
 * hands each connection to one worker's accept, no hop through the primary) serve the proxy and
 * serverless ports and relay straight to the computes' sockets. Workers get compute leases from
 * the primary (src/workers/lease-service.ts) and share the coordinator (the primary's over IPC,
 * or Redis). A worker that dies is forked again; only its own sessions end.
 */
import cluster, { type Worker } from 'node:cluster';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { buildApi } from '../api/server.ts';
import { loadTlsIdentity } from '../proxy/tls-certs.ts';
import type { Config } from '../src/config.ts';
import { type Core, startCore } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import type { MetricsJson } from '../src/metrics.ts';
import { HubCoordinator } from '../src/workers/hub-coordinator.ts';
import { IpcPeer } from '../src/workers/ipc.ts';
import { LeaseService } from '../src/workers/lease-service.ts';
import { PoolSlotsHub } from '../src/workers/pool-slots.ts';
import { SIGNING_KEYS_CHANGED, type WorkerStart } from '../src/workers/worker-core.ts';
import { INVALIDATE } from '../src/coord/coordinator.ts';

// A worker that dies is forked again after this pause (no tight loop when it dies at start).
const RESTART_DELAY_MS = 500;
const WORKER_STOP_TIMEOUT_MS = 10_000;

interface Running {
  worker: Worker;
  peer: IpcPeer;
  ports: Promise<{ port: number; httpPort: number | undefined }>;
  ready: boolean;
}

/** The port itself, or for 0 a port free now. */
async function portFor(host: string, port: number): Promise<number> {
  if (port !== 0) return port;
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, host, () => resolve()));
  const chosen = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return chosen;
}

/** What main.ts's Gateway is, with the workers beside it. */
export interface GatewayWithWorkers {
  core: Core;
  apiPort: number;
  apiUrl: string;
  proxyPort: number;
  httpPort: number | undefined;
  caPath: string | undefined;
  /** Worker index → its pid. */
  workers(): Map<number, number>;
  stop(): Promise<void>;
}

export async function startWithWorkers(config: Config): Promise<GatewayWithWorkers> {
  const log = createLogger(config.logLevel, config.logFormat);
  // Port 0 (any free port) is chosen here, once: every worker, and one forked again after all died
  // (the shared socket closes with its last worker), listens on the same port.
  const listenOn = { proxyPort: await portFor(config.proxyHost, config.proxyPort), httpPort: config.httpPort === undefined ? undefined : await portFor(config.httpHost, config.httpPort) };
  const slots = new PoolSlotsHub();
  const running = new Map<number, Running>();
  let stopping = false;
  let hub: HubCoordinator | undefined;
  let leases: LeaseService | undefined;
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // bin/pgfleet.js loads TypeScript itself and, in a worker, runs cluster/worker.ts (nothing of the primary's).
  cluster.setupPrimary({ exec: fileURLToPath(new URL('../bin/pgfleet.js', import.meta.url)), args: ['start'], execArgv: [], silent: false });

  // The workers are forked before the core starts: loading their code takes about as long as the
  // core's start (the catalog, migrations, the template), and their hello is answered once it is up.
  const fork = (index: number): Running => {
    const worker = cluster.fork({ PGFLEET_WORKER_INDEX: String(index) });
    const peer = new IpcPeer(worker, `w${index}`);
    peer.handle('worker.hello', async (): Promise<WorkerStart> => {
      const { core } = await booted;
      peer.id = `${core.nodeId}.w${index}`;
      hub?.attach(peer);
      leases!.attach(peer);
      slots.attach(peer);
      return { index, nodeId: core.nodeId, catalogUrl: core.catalog.url, ...listenOn };
    });
    peer.onNote('failures.loginRefused', (login) => void booted.then(({ core }) => core.failures.loginRefused(login)));
    const ports = new Promise<{ port: number; httpPort: number | undefined }>((resolve, reject) => {
      peer.onNote('worker.ready', (ports) => {
        entry.ready = true;
        resolve(ports);
      });
      peer.onNote('worker.failed', (failure: { message: string; code?: string; port?: number; address?: string }) => {
        reject(Object.assign(new Error(failure.message), failure));
      });
      worker.once('exit', (code, signal) => reject(new Error(`proxy worker ${index} exited at start (${signal ?? code})`)));
    });
    ports.catch(() => {});
    worker.once('exit', (code, signal) => {
      peer.close();
      hub?.forget(peer);
      leases?.forget(peer);
      slots.forget(peer);
      if (running.get(index)?.worker === worker) running.delete(index);
      if (stopping) return;
      log.error({ worker: index, code, signal }, 'proxy worker died; its sessions ended; starting it again');
      setTimeout(() => {
        if (!stopping) running.set(index, fork(index));
      }, RESTART_DELAY_MS).unref();
    });
    const entry: Running = { worker, peer, ports, ready: false };
    return entry;
  };
  const boot = async () => {
    const core = await startCore(config, log, { coordinator: (nodeId) => (hub = new HubCoordinator(nodeId)) });
    // Made here once (a generated CA and certificate), so the workers only read them.
    const identity = await loadTlsIdentity({ dataDir: config.dataDir, domain: config.domain, certFile: config.tlsCert, keyFile: config.tlsKey });
    leases = new LeaseService(core.routes, core.acquire, core.computes);
    // Workers verify gateway tokens with keys read from the data dir: a rotation here is announced to them.
    const rotate = core.jwt.rotate.bind(core.jwt);
    core.jwt.rotate = async () => {
      const kid = await rotate();
      await core.coord.publish(INVALIDATE, { type: SIGNING_KEYS_CHANGED });
      return kid;
    };
    return { core, identity };
  };
  const booted = boot();
  for (let i = 1; i <= config.workers; i++) running.set(i, fork(i));
  let core: Core;
  let identity: Awaited<ReturnType<typeof loadTlsIdentity>>;
  try {
    ({ core, identity } = await booted);
  } catch (err) {
    // The workers' hello fails with it and they exit; none is forked again.
    stopping = true;
    await Promise.all([...running.values()].map(({ worker }) => new Promise((resolve) => (worker.isDead() ? resolve(undefined) : worker.once('exit', resolve)))));
    throw err;
  }

  const stopWorkers = () => Promise.all([...running.values()].map(({ worker, peer }) => new Promise<void>((resolve) => {
    if (worker.isDead()) return resolve();
    const kill = setTimeout(() => worker.process.kill('SIGKILL'), WORKER_STOP_TIMEOUT_MS);
    worker.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    peer.notify('worker.stop');
  })));

  try {
    const first = await Promise.all([...running.values()].map((r) => r.ports));
    const { port, httpPort } = first[0];
    const ready = () => [...running.values()].filter((r) => r.ready);
    core.metrics.gatherWorkers(() => ready().length, async () => {
      const answers = await Promise.allSettled(ready().map((r) => r.peer.call<MetricsJson>('metrics.json')));
      return answers.flatMap((a) => (a.status === 'fulfilled' && a.value ? [a.value] : []));
    });
    const api = await buildApi(core, {
      publicAddress: {
        domain: config.domain, port, configuredCertificate: !identity.caPath, caPath: identity.caPath,
        httpPort, httpPlaintext: config.allowPlaintext,
      },
    });
    await api.listen({ host: config.apiHost, port: config.apiPort });
    const apiPort = (api.server.address() as AddressInfo).port;
    log.info({ api: `http://${config.apiHost}:${apiPort}`, proxy_port: port, http_port: httpPort, workers: config.workers }, 'pgfleet is ready');
    let stopped: Promise<void> | undefined;
    return {
      core, apiPort, apiUrl: `http://${config.apiHost}:${apiPort}`, proxyPort: port, httpPort, caPath: identity.caPath,
      /** Worker index → its pid, for the operator and tests. */
      workers: () => new Map([...running].map(([i, r]) => [i, r.worker.process.pid!])),
      stop: () => (stopped ??= (async () => {
        stopping = true;
        await api.close();
        await stopWorkers();
        await core.stop();
      })()),
    };
  } catch (err) {
    stopping = true;
    await stopWorkers();
    await core.stop();
    throw err;
  }
}
