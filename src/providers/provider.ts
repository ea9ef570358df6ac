import type { CuRange } from '../autoscaling.ts';
import type pg from 'pg';
import type { PgfleetError } from '../errors.ts';
import type { PointInTime } from './point-in-time.ts';
import type { Quotas } from '../quotas.ts';

/**
 * What runs computes. Providers know nothing of HTTP or the wire protocol: they are told
 * which branch, and answer with an address the proxy can reach.
 */

/** Everything a provider needs to know about one branch; built from the catalog. */
export interface BranchRef {
  databaseId: string;
  branchId: string;
  /** The database's root branch (`main`); false for a branch made from another. */
  root: boolean;
  region: string;
  /** The Postgres database the tenant connects to. */
  databaseName: string;
  ownerRole: string;
  /** Every login role of the database, the owner included. */
  roles: string[];
  /** Idle seconds before the compute is suspended; 0 = never. */
  suspendTimeoutSeconds: number;
  quotas: Quotas;
  /** The compute's size range in compute units (1 CU = 1 CPU, 4 GiB); null = the gateway's default (PGFLEET_AUTOSCALING). */
  autoscaling: CuRange | null;
  /** The Postgres major of the database's computes (every branch's). */
  pgVersion: number;
  /** 'sync': a commit is acknowledged only once its WAL is in the store (local computes). */
  durability: 'async' | 'sync';
  /**
   * A root branch that starts as a copy of this branch's data (a partner template's, src/partner-templates.ts):
   * its first start copies it (as a branch would) instead of starting from the empty compute template.
   */
  copyOf?: string;
  /** What the provider asked the catalog to keep for this database/branch (ids at Neon, say). */
  providerState: ProviderState;
}

/** What a provider keeps in the catalog; a returned state is merged into the kept one, key by key. */
export type ProviderState = Record<string, unknown>;

/** Usage the provider meters itself, in hourly buckets, in pgfleet's metrics and units. */
export interface MeteredUsage {
  bucket: Date;
  metric: 'compute_time_ms' | 'active_time_ms' | 'written_data_bytes' | 'storage_bytes';
  value: number;
}

/** Where a running compute answers, and how the proxy starts a session there. */
export type ComputeAddress =
  /** A local compute: a private Unix socket; the proxy starts up as the role with trust. */
  | { kind: 'unix'; socketPath: string }
  /**
   * A remote compute: TCP to host:port, TLS verified for servername (sent as SNI unless it is an
   * IP address) against the system CAs plus `ca` when given, then SCRAM with the role's password.
   */
  | { kind: 'tcp'; host: string; port: number; servername: string; ca?: string; passwords: ReadonlyMap<string, string> }
  /**
   * A local compute of another node of the fleet: open() reaches its socket through that node
   * (src/nodes); the session then starts up as with a Unix socket. `cancel` never wakes it.
   */
  | { kind: 'node'; nodeId: string; open(op: 'connect' | 'cancel'): Promise<import('node:stream').Duplex> };

/** What a provider can tell about a branch's usage. */
export interface UsageSample {
  /** A monotonic count of WAL bytes the branch generated (its WAL position); only while running. */
  walBytes?: number;
  /** The WAL position when the running compute started: the baseline for walBytes. */
  walBytesAtStart?: number;
  /** The size of the branch's data. */
  storageBytes?: number;
}

export interface ProviderEvents {
  /** A compute ended without being asked to (a crash, a kill -9). */
  onComputeExit?: (branchId: string, detail: string) => void;
  /** Commits of these backends waited too long for the store: their sessions must end with `reason` (never acknowledged). */
  onStuckCommits?: (branchId: string, backendPids: number[], reason: PgfleetError) => void;
}

/** A resource a provider made for a database (a Neon project), as the provider lists it. */
export interface ProviderResource {
  id: string;
  /** The database it was made for (what its name says). */
  databaseId: string;
  createdAt: Date;
}

export interface Provider {
  readonly name: string;
  /** The Postgres majors its computes can run (local: those installed; neon: Neon's), oldest first. */
  readonly pgVersions: readonly number[];
  /** The version a major's computes run: `17.10` (local: the binaries'), or the major itself, `17`, where no more is known (neon). */
  postgresVersion(major: number): string;
  /**
   * Records a new branch. Cheap: nothing starts, nothing big is written. Returns state to keep.
   * `again`: an earlier attempt may have made the resource already; find and adopt it rather than make a second.
   */
  create(ref: BranchRef, opts?: { again?: boolean }): Promise<ProviderState>;
  /**
   * create() makes nothing and keeps nothing (what a database needs is made at its first start): a
   * new database is ready once its catalog rows are written, in the same statement.
   */
  readonly createsAtFirstStart: boolean;
  /** Applies ref's suspend timeout and quotas where the provider enforces them too; resolves once in effect. */
  updateSettings(ref: BranchRef): Promise<void>;
  /**
   * Resources the provider's own service holds for databases, for reconciliation with the catalog;
   * undefined when the catalog is the only record (local). `unavailable`: ids it could not describe now.
   */
  listResources?(): Promise<{ resources: ProviderResource[]; unavailable: string[] }>;
  /** When the resource a database's state names is gone, what is gone ("Neon project … no longer exists"); else undefined. */
  missingResource?(ref: BranchRef): Promise<string | undefined>;
  /** Deletes a resource listResources returned; one already gone is fine. */
  deleteResource?(id: string): Promise<void>;
  /** Starts the branch's compute and resolves once it accepts connections. */
  start(ref: BranchRef): Promise<ComputeAddress>;
  /**
   * The address of a running compute brought up to date with `ref`, a newer view of the branch
   * (role passwords added or rotated since it started); absent = an address never changes.
   */
  addressFor?(ref: BranchRef, running: ComputeAddress): ComputeAddress;
  /** Fast shutdown; resolves once it has stopped. */
  stop(ref: BranchRef): Promise<void>;
  /** The size in compute units the branch's compute holds now (0 when it is not running); asked at its start. */
  currentUnits?(ref: BranchRef): Promise<number>;
  /** Stops the compute and removes every file or remote resource of the branch. */
  delete(ref: BranchRef): Promise<void>;
  /** Deleting a database's root branch deletes its other branches with it (a Neon project): they need no delete of their own. */
  readonly rootDeletesAll: boolean;
  /** Makes the compute's roles match ref.roles: now when running, else at its next start. Returns state to keep. */
  syncRoles(ref: BranchRef): Promise<ProviderState>;
  /**
   * A role's password was reset at pgfleet: rotate whatever secret the provider itself holds for
   * that role (the client-facing password is pgfleet's verifier, not this). Returns state to keep.
   */
  resetPassword(ref: BranchRef, role: string): Promise<ProviderState>;
  /** Usage metered by the provider between from and to (empty when pgfleet meters everything itself). */
  usage(ref: BranchRef, from: Date, to: Date): Promise<MeteredUsage[]>;
  /** The metrics usage() reports: pgfleet's own metering leaves them to the provider. */
  readonly meters: readonly MeteredUsage['metric'][];
  status(ref: BranchRef): 'running' | 'stopped';
  /** What the provider can measure of a branch on the spot: WAL written, storage. */
  sample(ref: BranchRef): Promise<UsageSample>;
  /** History, branches and point-in-time restore; absent = the provider cannot branch. */
  branching?: Branching;
  /** Stops every compute this provider runs (pgfleet shutting down). */
  shutdown(): Promise<void>;
}

/**
 * Runs inside the catalog transaction that makes a restore or reset take effect; `kept` is what the
 * provider keeps for the branch a restore makes of the state before it.
 */
export type CommitStep = (tx: pg.ClientBase, kept?: ProviderState) => Promise<void>;

/** What a provider does for history, branches and point-in-time restore. */
export interface Branching {
  /** A branch with children can be deleted (they move up to its parent); false: delete them first. */
  readonly deletesBranchesWithChildren: boolean;
  /** The earliest moment `at` may name for this branch; undefined = no history (only "now"). */
  earliest(ref: BranchRef, retentionSeconds: number): Promise<Date | undefined>;
  /**
   * Gives the new branch `child` the data of `source` as it is now, or as it was at `at`.
   * `running` says whether source's compute runs (it keeps running: the copy is made online).
   * Returns the state to keep for `child`.
   */
  branch(source: BranchRef, child: BranchRef, at: PointInTime | undefined, running: boolean): Promise<ProviderState>;
  /**
   * Rewinds `ref` (its compute stopped) to `at`; what it held until now becomes the branch
   * `before`'s. `commit` runs in the catalog transaction that makes it so.
   */
  restore(ref: BranchRef, at: PointInTime, before: BranchRef, commit: CommitStep): Promise<void>;
  /** `ref` (its compute stopped) becomes a copy of `parent` as it is now. */
  reset(ref: BranchRef, parent: BranchRef, parentRunning: boolean, commit: CommitStep): Promise<void>;
  /** Removes history older than the retention window. */
  prune(ref: BranchRef, retentionSeconds: number): Promise<void>;
  /** Takes a base backup of a running compute when its newest is older than the interval. */
  backupIfDue(ref: BranchRef, retentionSeconds: number): Promise<void>;
  /**
   * At start, before anything is served: puts back the files of restores and resets a crash
   * interrupted, or finishes a branch the provider had already made (it is then 'ready').
   */
  recoverInterrupted(): Promise<void>;
}
