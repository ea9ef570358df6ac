/**
 * The nodes of a fleet. A node is one pgfleet process with its own data dir; a `local`
 * database's data lives on the node recorded in the catalog (databases.node_id), placed on the
 * live node with the most room when it is made. A gateway that gets a connection, a wake or a
 * suspend for a database of another node asks that node over the node link (node-link.ts); the
 * owning node runs the compute. Each node records a heartbeat; one silent for NODE_GONE_SECONDS
 * is gone, and its databases answer 57P03 naming their host while every other database works.
 */
import type { Duplex } from 'node:stream';
import type { Catalog } from '../catalog/catalog.ts';
import type { BranchCall } from '../branches.ts';
import { RECOVERY_TIMEOUT_MS } from '../providers/local/recovery.ts';
import type { BranchRoute } from '../catalog/routes.ts';
import type { Logger } from '../log.ts';
import type { BranchRef, ComputeAddress } from '../providers/provider.ts';
import { type NodeRequest, askNode, dialNode, hostUnavailable } from './node-link.ts';

export const NODE_HEARTBEAT_MS = 3000;
export const NODE_GONE_SECONDS = 30;
/** A branch call forwarded to the owning node may replay a long history. */
const BRANCH_CALL_TIMEOUT_MS = RECOVERY_TIMEOUT_MS + 60_000;

export interface NodeRecord {
  id: string;
  address: string | null;
  silentSeconds: number | null;
}

export class Nodes {
  private beat_: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    private readonly catalog: Catalog,
    private readonly key: Buffer | undefined,
    /** Several nodes share the catalog (REDIS_URL set): placement and the node link are on. */
    readonly fleet: boolean,
    /** How long an answer may take: a wake on the owning node, and then some. */
    private readonly answerTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  private beatQuery: (() => Promise<unknown>) | undefined;

  /**
   * Records this node (its link address, its room, its public signing keys) and keeps its
   * heartbeat going.
   */
  async register(address: string, maxComputes: number, running: () => number, jwks: () => unknown): Promise<void> {
    this.beatQuery = () => this.catalog.query(
      `INSERT INTO nodes (id, address, max_computes, running, jwks) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET address = $2, max_computes = $3, running = $4, jwks = $5, heartbeat_at = clock_timestamp()`,
      [this.id, address, maxComputes, running(), JSON.stringify(jwks())],
    );
    await this.beat();
    this.beat_ = setInterval(() => void this.beat().catch((err) => this.log.warn({ err: err.message }, 'node heartbeat failed')), NODE_HEARTBEAT_MS);
    this.beat_.unref();
  }

  /** Records this node's row now (a rotated signing key is known to the fleet at once). */
  async beat(): Promise<void> {
    await this.beatQuery?.();
  }

  stop(): void {
    clearInterval(this.beat_);
  }

  /** Whether a database recorded on this node is served by another node. */
  isRemote(node: { id: string } | null | undefined): boolean {
    return node != null && node.id !== this.id;
  }

  /**
   * Where a new local database goes: alone, here; in a fleet, the live node with the most room
   * (fewest databases per compute slot; ties go to the lowest id).
   */
  async place(): Promise<string> {
    if (!this.fleet) return this.id;
    const { rows } = await this.catalog.query<{ id: string }>(
      `SELECT n.id FROM nodes n
        WHERE n.heartbeat_at > clock_timestamp() - make_interval(secs => $1)
        ORDER BY (SELECT count(*) FROM databases d WHERE d.node_id = n.id)::float8 / n.max_computes, n.id
        LIMIT 1`,
      [NODE_GONE_SECONDS],
    );
    return rows[0]?.id ?? this.id;
  }

  /** A node as the catalog has it: where it listens, and how long since its last heartbeat. */
  async record(nodeId: string): Promise<NodeRecord> {
    const { rows } = await this.catalog.query(
      `SELECT id, address, extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS silent FROM nodes WHERE id = $1`, [nodeId]);
    return { id: nodeId, address: rows[0]?.address ?? null, silentSeconds: rows[0]?.silent ?? null };
  }

  private reachable(node: NodeRecord): { id: string; address: string } {
    if (!this.key || !node.address) throw hostUnavailable(node.id, 'this gateway is not part of a fleet (REDIS_URL) that can reach it');
    if (node.silentSeconds === null || node.silentSeconds > NODE_GONE_SECONDS) {
      throw hostUnavailable(node.id, `no heartbeat for ${node.silentSeconds === null ? 'ever' : `${Math.round(node.silentSeconds)} s`}`);
    }
    return { id: node.id, address: node.address };
  }

  /** Asks the owning node to do something with a branch (wake, suspend, create, delete, ...). */
  async ask(node: NodeRecord, op: Exclude<NodeRequest['op'], 'branches'>, ref: BranchRef): Promise<void> {
    await askNode(this.reachable(node), this.key!, this.id, { op, ref }, this.answerTimeoutMs);
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
