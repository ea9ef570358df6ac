// Response bodies of the fake Neon API, shaped as Neon's OpenAPI document requires.

export interface FakeOperation {
  id: string;
  projectId: string;
  branchId: string;
  endpointId: string | undefined;
  action: string;
  status: 'running' | 'finished' | 'failed';
  error: string | undefined;
  createdAt: Date;
  updatedAt: Date;
}

export interface FakeRole {
  password: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface FakeDatabase {
  id: number;
  name: string;
  owner: string;
  createdAt: Date;
}

/** A branch of a project: its own roles and databases (copied from its parent when made), and its data's directory. */
export interface FakeBranch {
  id: string;
  projectId: string;
  name: string;
  parentId: string | undefined;
  parentLsn: string | undefined;
  parentTimestamp: Date | undefined;
  isDefault: boolean;
  createdAt: Date;
  updatedAt: Date;
  roles: Map<string, FakeRole>;
  databases: FakeDatabase[];
  /** Holds pgdata/, archive/ (its WAL) and base/ (the consistent copy its history starts from). */
  dir: string;
}

/** A read-write endpoint: the compute of one branch, on a host of its own. */
export interface FakeEndpoint {
  id: string;
  projectId: string;
  branchId: string;
  host: string;
  createdAt: Date;
  /** Its suspend timeout. */
  suspendTimeoutSeconds: number;
  /** Its autoscaling range (min = max: a fixed size). */
  computeUnits: [number, number];
  state: 'init' | 'active' | 'idle';
  pending: 'active' | 'idle' | undefined;
  startedAt: Date | undefined;
  suspendedAt: Date | undefined;
  /** When it ran: [start, end or undefined while running], epoch ms. */
  active: [number, number | undefined][];
}

export interface FakeProject {
  id: string;
  name: string;
  regionId: string;
  pgVersion: number;
  createdAt: Date;
  quota: Record<string, number>;
  /** The project's default for new endpoints. */
  defaultSuspendTimeoutSeconds: number;
  /** The project's default autoscaling range for new endpoints. */
  defaultComputeUnits: [number, number];
  /** How far back its branches may be made from or restored to. */
  historyRetentionSeconds: number;
  defaultBranchId: string;
  branches: Map<string, FakeBranch>;
  endpoints: Map<string, FakeEndpoint>;
}

const iso = (d: Date) => d.toISOString();

export function projectBody(p: FakeProject) {
  const month = new Date(Date.UTC(p.createdAt.getUTCFullYear(), p.createdAt.getUTCMonth(), 1));
  const next = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1));
  return {
    id: p.id, platform_id: 'aws', region_id: p.regionId, name: p.name, provisioner: 'k8s-neonvm', pg_version: p.pgVersion,
    proxy_host: '127.0.0.1', branch_logical_size_limit: 0, branch_logical_size_limit_bytes: 0, store_passwords: true,
    cpu_used_sec: 0, active_time_seconds: 0, compute_time_seconds: 0, written_data_bytes: 0, data_transfer_bytes: 0,
    data_storage_bytes_hour: 0, creation_source: 'console', history_retention_seconds: p.historyRetentionSeconds,
    created_at: iso(p.createdAt), updated_at: iso(p.createdAt), consumption_period_start: iso(month), consumption_period_end: iso(next),
    owner_id: 'fake-owner', settings: { quota: p.quota },
    default_endpoint_settings: { suspend_timeout_seconds: p.defaultSuspendTimeoutSeconds },
  };
}

export function projectListItemBody(p: FakeProject) {
  const { id, platform_id, region_id, name, provisioner, pg_version, proxy_host, branch_logical_size_limit, branch_logical_size_limit_bytes,
    store_passwords, cpu_used_sec, creation_source, created_at, updated_at, owner_id, settings, default_endpoint_settings } = projectBody(p);
  return {
    id, platform_id, region_id, name, provisioner, pg_version, proxy_host, branch_logical_size_limit, branch_logical_size_limit_bytes,
    store_passwords, cpu_used_sec, creation_source, created_at, updated_at, owner_id, settings, default_endpoint_settings, active_time: 0,
  };
}

export function endpointBody(p: FakeProject, e: FakeEndpoint) {
  return {
    host: e.host, id: e.id, project_id: p.id, branch_id: e.branchId, region_id: p.regionId,
    autoscaling_limit_min_cu: e.computeUnits[0], autoscaling_limit_max_cu: e.computeUnits[1], type: 'read_write', current_state: e.state,
    ...(e.pending ? { pending_state: e.pending } : {}),
    pooler_enabled: false, pooler_mode: 'transaction', disabled: false, passwordless_access: false,
    creation_source: 'console', created_at: iso(e.createdAt), updated_at: iso(e.createdAt), settings: {},
    proxy_host: '127.0.0.1', suspend_timeout_seconds: e.suspendTimeoutSeconds, provisioner: 'k8s-neonvm',
    ...(e.startedAt ? { started_at: iso(e.startedAt) } : {}),
    ...(e.suspendedAt ? { suspended_at: iso(e.suspendedAt) } : {}),
  };
}

export function branchBody(b: FakeBranch) {
  return {
    id: b.id, project_id: b.projectId, name: b.name, current_state: 'ready', state_changed_at: iso(b.updatedAt),
    ...(b.parentId ? { parent_id: b.parentId } : {}),
    ...(b.parentLsn ? { parent_lsn: b.parentLsn } : {}),
    ...(b.parentTimestamp ? { parent_timestamp: iso(b.parentTimestamp) } : {}),
    creation_source: 'console', created_at: iso(b.createdAt), updated_at: iso(b.updatedAt), default: b.isDefault, protected: false,
    cpu_used_sec: 0, active_time_seconds: 0, compute_time_seconds: 0, written_data_bytes: 0, data_transfer_bytes: 0,
  };
}

export function roleBody(b: FakeBranch, name: string, withPassword: boolean) {
  const r = b.roles.get(name)!;
  return {
    branch_id: b.id, name, protected: false, created_at: iso(r.createdAt), updated_at: iso(r.updatedAt),
    ...(withPassword ? { password: r.password } : {}),
  };
}

export function databaseBody(b: FakeBranch, db: FakeDatabase) {
  return { id: db.id, branch_id: b.id, name: db.name, owner_name: db.owner, created_at: iso(db.createdAt), updated_at: iso(db.createdAt) };
}

export function operationBody(op: FakeOperation) {
  return {
    id: op.id, project_id: op.projectId, branch_id: op.branchId, ...(op.endpointId ? { endpoint_id: op.endpointId } : {}),
    action: op.action, status: op.status, ...(op.error ? { error: op.error } : {}), failures_count: op.status === 'failed' ? 1 : 0,
    created_at: iso(op.createdAt), updated_at: iso(op.updatedAt), total_duration_ms: op.updatedAt.getTime() - op.createdAt.getTime(),
  };
}

export function connectionUriBody(b: FakeBranch, e: FakeEndpoint, port: number) {
  const db = b.databases[0]!;
  const password = b.roles.get(db.owner)!.password;
  return {
    connection_uri: `postgresql://${db.owner}:${password}@${e.host}:${port}/${db.name}?sslmode=verify-full`,
    connection_parameters: { database: db.name, password, role: db.owner, host: e.host, pooler_host: e.host },
  };
}

export const errorBody = (code: string, message: string) => ({ code, message, request_id: `fake-${Date.now().toString(36)}` });
