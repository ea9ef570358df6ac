/**
 * The nodes of a fleet. A node is one pgfleet process with its own data dir, a cache of the
 * databases placed on it (databases.node_id); their data lives in the store. A gateway that gets
 * a connection, a wake or a suspend for a database placed on another node asks that node over the
 * node link (node-link.ts); the owning node runs the compute. Each node records a heartbeat; one
 * silent for PGFLEET_NODE_DEAD_AFTER is fenced (fencing.ts) and its databases placed elsewhere.
 * A node writes to the store only while its lease holds: its last heartbeat is younger than half
 * that time and its generation is the one the catalog has (a fenced node's is not).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { ConflictError } from '../errors.ts';
import type { Catalog } from '../catalog/catalog.ts';
import type { BranchCall } from '../branch-calls.ts';
import { RECOVERY_TIMEOUT_MS } from '../providers/local/recovery.ts';
import type { BranchRoute } from '../catalog/routes.ts';
import type { Logger } from '../log.ts';
import type { BranchRef, ComputeAddress } from '../providers/provider.ts';
import { type NodeRequest, askNode, dialNode, hostUnavailable } from './node-link.ts';

/** How often a node records its heartbeat, at most: more often when PGFLEET_NODE_DEAD_AFTER is short (see heartbeatMs). */
const NODE_HEARTBEAT_MS = 3000;
/** A branch call forwarded to the owning node may replay a long history. */
const BRANCH_CALL_TIMEOUT_MS = RECOVERY_TIMEOUT_MS + 60_000;

/** A node as the operator sees it. */
export interface NodeView {
  id: string;
  address: string | null;
  /** live; dead (silent past PGFLEET_NODE_DEAD_AFTER, not yet fenced); fenced (declared dead, until it joins again); draining. */
  state: 'live' | 'dead' | 'fenced' | 'draining';
  generation: number;
  heartbeatAt: Date | null;
  maxComputes: number;
  running: number;
  databaseIds: string[];
}

/** Database ids listed per node at most. */
const LISTED_DATABASES = 10_000;

export interface NodeRecord {
  id: string;
  address: string | null;
  silentSeconds: number | null;
}

export class Nodes extends EventEmitter {
  private beat_: NodeJS.Timeout | undefined;
  private generation_ = 1;
  /** When this node's heartbeat last reached the catalog with its generation. */
  private lastBeat = Date.now();
  private fenced_ = false;

  constructor(
    readonly id: string,
    private readonly catalog: Catalog,
    private readonly key: Buffer | undefined,
    /** Several nodes share the catalog (REDIS_URL set): placement, fencing and the node link are on. */
    readonly fleet: boolean,
    /** How long an answer may take: a wake on the owning node, and then some. */
    private readonly answerTimeoutMs: number,
    /** A node silent this long is dead (PGFLEET_NODE_DEAD_AFTER). */
    readonly deadAfterSeconds: number,
    /**
     * The fleet shares one store (PGFLEET_STORAGE_URL): a dead node is fenced and its databases move.
     * Without it a database lives on its node's disk alone, and waits for its node to come back.
     */
    readonly fencing: boolean,
    private readonly log: Logger,
  ) {
    super();
  }

  private beatQuery: (() => Promise<boolean>) | undefined;

  /**
   * A heartbeat several times within the lease (half of PGFLEET_NODE_DEAD_AFTER), so that one slow
   * beat does not end it.
   */
  get heartbeatMs(): number {
    return Math.min(NODE_HEARTBEAT_MS, (this.deadAfterSeconds * 1000) / 6);
  }

  get generation(): number {
    return this.generation_;
  }

  /**
   * Whether this node may write (to the store, for its databases): alone or without a shared store,
   * always; in a fleet on a shared store, while its generation is the catalog's and its last
   * heartbeat is younger than half the dead-after time, so that it stops writing before any other
   * node may declare it dead and take over.
   */
  canWrite(): boolean {
    if (!this.fencing) return true;
    return !this.fenced_ && Date.now() - this.lastBeat < (this.deadAfterSeconds * 1000) / 2;
  }

  /**
   * Records this node (its link address, its room, its public signing keys) and keeps its
   * heartbeat going. A node declared dead while it was away comes back with the generation the
   * catalog gave it then; its old databases are placed elsewhere.
   */
  async register(address: string, maxComputes: number, running: () => number, jwks: () => unknown): Promise<void> {
    const join = async () => {
      const { rows } = await this.catalog.query<{ generation: string }>(
        `INSERT INTO nodes (id, address, max_computes, running, jwks) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET address = $2, max_computes = $3, running = $4, jwks = $5, heartbeat_at = clock_timestamp(), fenced_at = NULL, draining = false
         RETURNING generation`,
        [this.id, address, maxComputes, running(), JSON.stringify(jwks())]);
      this.generation_ = Number(rows[0]!.generation);
      this.fenced_ = false;
      this.lastBeat = Date.now();
    };
    await join();
    this.beatQuery = async () => {
      const started = Date.now();
      const { rowCount } = await this.catalog.query(
        `UPDATE nodes SET address = $2, max_computes = $3, running = $4, jwks = $5, heartbeat_at = clock_timestamp()
          WHERE id = $1 AND generation = $6 AND fenced_at IS NULL`,
        [this.id, address, maxComputes, running(), JSON.stringify(jwks()), this.generation_]);
      if (rowCount) {
        this.lastBeat = started;
        return true;
      }
      // Declared dead while cut off: stop everything now, then join again as a node with no databases.
      this.fenced_ = true;
      this.log.error({ node: this.id, generation: this.generation_ }, 'this node was fenced by the fleet (declared dead): its computes stop and its databases are served elsewhere');
      this.emit('fenced');
      await join();
      return false;
    };
    let leaseLost = false;
    this.beat_ = setInterval(() => {
      // Cut off from the catalog past half the dead-after time: another node may take over soon, so this one stops first.
      if (this.fencing && !this.canWrite() && !leaseLost) {
        leaseLost = true;
        this.log.error({ node: this.id }, 'no heartbeat reached the catalog for half of PGFLEET_NODE_DEAD_AFTER: this node stops its computes until it is back');
        this.emit('lease-lost');
      } else if (this.canWrite()) {
        leaseLost = false;
      }
      void this.beat().catch((err) => this.log.warn({ err: err.message }, 'node heartbeat failed'));
    }, this.heartbeatMs);
    this.beat_.unref();
  }

  /** Records this node's row now (a rotated signing key is known to the fleet at once). */
  async beat(): Promise<void> {
    await this.beatQuery?.();
  }

  stop(): void {
    clearInterval(this.beat_);
  }

  /**
   * Where a new local database goes: alone, here; in a fleet, the live node with the most room
   * (fewest databases per compute slot; ties go to the lowest id), never a draining or fenced one.
   */
  async place(except?: string): Promise<string> {
    if (!this.fleet && except === this.id) throw new ConflictError('this gateway is alone (no REDIS_URL): there is no other node to move its databases to');
    if (!this.fencing && except === this.id) throw new ConflictError('the nodes share no store (PGFLEET_STORAGE_URL): a database lives on its node\'s disk and cannot move');
    if (!this.fleet) return this.id;
    const { rows } = await this.catalog.query<{ id: string }>(
      `SELECT n.id FROM nodes n
        WHERE n.heartbeat_at > clock_timestamp() - make_interval(secs => $1) AND NOT n.draining AND n.fenced_at IS NULL AND n.id IS DISTINCT FROM $2
        ORDER BY (SELECT count(*) FROM databases d WHERE d.node_id = n.id)::float8 / n.max_computes, n.id
        LIMIT 1`,
      [this.deadAfterSeconds, except ?? null],
    );
    if (!rows[0] && except === this.id) throw new ConflictError('no other live node can take this node\'s databases');
    return rows[0]?.id ?? this.id;
  }

  /** Every node with its state and the databases placed on it; alone, this node and every local database. */
  async list(here: { maxComputes: number; running: number }): Promise<NodeView[]> {
    const databases = async (where: string, values: unknown[]) => (await this.catalog.query<{ id: string }>(
      `SELECT id FROM databases WHERE provider = 'local' AND (${where}) ORDER BY created_at, id LIMIT ${LISTED_DATABASES}`, values)).rows.map((r) => r.id);
    if (!this.fleet) {
      return [{ id: this.id, address: null, state: 'live', generation: this.generation_, heartbeatAt: new Date(), ...here,
        databaseIds: await databases('node_id = $1 OR node_id IS NULL', [this.id]) }];
    }
    const { rows } = await this.catalog.query(
      `SELECT id, address, generation, heartbeat_at, max_computes, running, draining, fenced_at IS NOT NULL AS fenced,
              extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS silent FROM nodes ORDER BY id`);
    return Promise.all(rows.map(async (r) => ({
      id: r.id, address: r.address, generation: Number(r.generation), heartbeatAt: r.heartbeat_at, maxComputes: r.max_computes, running: r.running,
      state: r.fenced ? 'fenced' as const : r.silent > this.deadAfterSeconds ? 'dead' as const : r.draining ? 'draining' as const : 'live' as const,
      databaseIds: await databases('node_id = $1', [r.id]),
    })));
  }

  /** A node as the catalog has it: where it listens, and how long since its last heartbeat. */
  async record(nodeId: string): Promise<NodeRecord> {
    const { rows } = await this.catalog.query(
      `SELECT id, address, extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS silent FROM nodes WHERE id = $1`, [nodeId]);
    return { id: nodeId, address: rows[0]?.address ?? null, silentSeconds: rows[0]?.silent ?? null };
  }

  private reachable(node: NodeRecord): { id: string; address: string } {
    if (!this.key || !node.address) throw hostUnavailable(node.id, 'this gateway is not part of a fleet (REDIS_URL) that can reach it');
    if (node.silentSeconds === null || node.silentSeconds > this.deadAfterSeconds) {
      throw hostUnavailable(node.id, `no heartbeat for ${node.silentSeconds === null ? 'ever' : `${Math.round(node.silentSeconds)} s`}`);
    }
    return { id: node.id, address: node.address };
  }

  /** Asks the owning node to do something with a branch (wake, suspend, delete, ...). */
  async ask(node: NodeRecord, op: Exclude<NodeRequest['op'], 'branches' | 'drain'>, ref: BranchRef): Promise<void> {
    await askNode(this.reachable(node), this.key!, this.id, { op, ref }, this.answerTimeoutMs);
  }

  /** Has another node start draining itself; resolves with how many databases it holds. */
  async askDrain(node: NodeRecord): Promise<number> {
    return await askNode(this.reachable(node), this.key!, this.id, { op: 'drain' }, this.answerTimeoutMs) as number;
  }

  /** Has the owning node run a branch lifecycle call (it may take as long as a recovery); resolves with its result. */
  branchCall(node: NodeRecord, call: BranchCall): Promise<unknown> {
    return askNode(this.reachable(node), this.key!, this.id, { op: 'branches', call }, BRANCH_CALL_TIMEOUT_MS);
  }

  /** The compute of a branch on another node: its sessions and cancels go through the owning node. */
  addressOf(route: BranchRoute & { node: NodeRecord }, ref: BranchRef): ComputeAddress {
    const node = route.node;
    return {
      kind: 'node',
      nodeId: node.id,
      open: (op: 'connect' | 'cancel'): Promise<Duplex> => dialNode(this.reachable(node), this.key!, this.id, { op, ref }, this.answerTimeoutMs),
    };
  }
}
