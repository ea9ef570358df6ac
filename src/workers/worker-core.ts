/**
 * The core of a proxy worker: what the proxy needs (src/gateway.ts ProxyCore), built over the
 * catalog (its own small pool), the coordinator (Redis when configured, else the primary's over
 * IPC) and the primary's compute leases. Sessions are relayed from here straight to the
 * compute's socket; the primary only counts them on the compute.
 */
import { branchRefOf, type BranchRoute } from '../catalog/routes.ts';
import { Catalog } from '../catalog/catalog.ts';
import { RouteCache } from '../catalog/route-cache.ts';
import { HeldLease, type Lease, linkedLease } from '../compute-target.ts';
import type { Config } from '../config.ts';
import { RedisCoordinator } from '../coord/redis-coordinator.ts';
import { type Coordinator, INVALIDATE } from '../coord/coordinator.ts';
import { DatabaseUnavailableError } from '../errors.ts';
import { Events } from '../events/events.ts';
import { RecentFailures } from '../failures.ts';
import type { ProxyCore } from '../gateway.ts';
import { openJwtAuth } from '../jwt/jwt-auth.ts';
import { FleetKeys } from '../jwt/fleet-keys.ts';
import type { Logger } from '../log.ts';
import { QuotaEvents } from '../metering/quota-events.ts';
import { UsageTracker } from '../metering/usage-tracker.ts';
import { OperatorMetrics } from '../metrics.ts';
import { nodeKey } from '../nodes/node-link.ts';
import { Nodes } from '../nodes/nodes.ts';
import { unavailableReason } from '../database-records.ts';
import type { IpcPeer } from './ipc.ts';
import { IpcCoordinator } from './ipc-coordinator.ts';
import { fromWire, type WireAddress } from './lease-service.ts';
import { RemotePoolSlots } from './pool-slots.ts';
import { RemoteComputes } from './remote-computes.ts';

/** The message the primary publishes after a key rotation. */
export const SIGNING_KEYS_CHANGED = 'signing-keys';

/** What the primary tells a worker at its start. */
export interface WorkerStart {
  index: number;
  nodeId: string;
  /** The catalog's connection string (the embedded one's Unix socket, or DATABASE_URL). */
  catalogUrl: string;
  /** The ports every worker listens on (chosen by the primary when configured as 0). */
  proxyPort: number;
  httpPort: number | undefined;
}

export interface WorkerCore extends ProxyCore {
  stop(): Promise<void>;
}

// The catalog pool of one worker: routes, quotas and usage flushes; the primary keeps its own 10.
const WORKER_CATALOG_CONNECTIONS = 3;

export async function startWorkerCore(config: Config, log: Logger, peer: IpcPeer, start: WorkerStart): Promise<WorkerCore> {
  const cleanups: (() => Promise<void> | void)[] = [];
  const undo = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    const catalog = await Catalog.connect(start.catalogUrl, WORKER_CATALOG_CONNECTIONS, log);
    cleanups.push(() => catalog.close());
    const coord: Coordinator = config.redisUrl
      ? await RedisCoordinator.open(config.redisUrl, peer.id, log.child({ component: 'coord' }))
      : new IpcCoordinator(peer);
    cleanups.push(() => coord.close());
    const computes = new RemoteComputes(peer, { maxComputes: config.maxComputes, wakeTimeoutMs: config.wakeTimeoutMs, log });
    const key = config.redisUrl ? nodeKey(config.secretKey!) : undefined;
    const nodes = new Nodes(start.nodeId, catalog, key, key !== undefined, config.wakeTimeoutMs + 10_000, config.storage.nodeDeadAfterSeconds, false, log);
    const here = (route: BranchRoute) => route.node == null || route.node.id === start.nodeId;
    const routes = new RouteCache(catalog, coord, { maxAgeMs: 60_000, maxEntries: 100_000, keeps: here });
    const jwt = await openJwtAuth(config, catalog, routes, log, key ? { keys: new FleetKeys(catalog, start.nodeId), publish: async () => {} } : undefined);
    // The primary rotated pgfleet's signing key (POST /v1/keys/rotate): tokens of the new one verify here at once.
    coord.subscribe(INVALIDATE, (m) => {
      if (m.type === SIGNING_KEYS_CHANGED) void jwt.keys.reload().catch((err) => log.warn({ err: String(err) }, 'could not read the new signing key'));
    });
    const events = new Events(catalog, log.child({ part: 'events' }));
    cleanups.push(() => events.settle());
    const usage = new UsageTracker(catalog, computes, coord, {
      flushSeconds: config.usageFlushSeconds, log, defaultAutoscaling: config.compute.autoscaling, quotaEvents: new QuotaEvents(events, log),
    });
    cleanups.push(() => usage.stop());
    const metrics = new OperatorMetrics(computes);
    metrics.registry.setDefaultLabels({ worker: String(start.index) });
    const releaseLease = (id: number) => peer.notify('lease.release', { id });
    const acquire = async (route: BranchRoute): Promise<Lease> => {
      if (route.status !== 'ready') throw new DatabaseUnavailableError(unavailableReason(route.databaseId, route.status, route.statusDetail));
      // A database of another node: through the node link, from here, as the primary would.
      if (!here(route)) return linkedLease(nodes.addressOf({ ...route, node: route.node! }, branchRefOf(route)));
      const { id, address } = await peer.call<{ id: number; address: WireAddress }>('lease.acquire', { endpointId: route.endpointId });
      return new HeldLease(computes.leased(route.branchId, fromWire(address)), releaseLease, id);
    };
    const failures = new RecentFailures();
    const loginRefused = failures.loginRefused.bind(failures);
    // The operator's console reads the primary's list: refusals seen here go there.
    failures.loginRefused = (login, now) => {
      loginRefused(login, now);
      peer.notify('failures.loginRefused', login);
    };
    return { config, log, computes, acquire, metrics, coord, usage, routes, jwt, failures, poolSlots: new RemotePoolSlots(peer), stop: undo };
  } catch (err) {
    await undo();
    throw err;
  }
}
