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

export interface FakeProject {
  id: string;
  name: string;
  regionId: string;
  pgVersion: number;
  createdAt: Date;
  quota: Record<string, number>;
  /** The endpoint's suspend timeout. */
  suspendTimeoutSeconds: number;
  /** The project's default for new endpoints. */
  defaultSuspendTimeoutSeconds: number;
  /** The endpoint's autoscaling range (min = max: a fixed size). */
  computeUnits: [number, number];
  branchId: string;
  endpointId: string;
  host: string;
  state: 'init' | 'active' | 'idle';
  pending: 'active' | 'idle' | undefined;
  startedAt: Date | undefined;
  suspendedAt: Date | undefined;
  roles: Map<string, FakeRole>;
  databases: { id: number; name: string; owner: string; createdAt: Date }[];
  /** When the endpoint ran: [start, end or undefined while running], epoch ms. */
  active: [number, number | undefined][];
}

const iso = (d: Date) => d.toISOString();

export function projectBody(p: FakeProject) {
  const month = new Date(Date.UTC(p.createdAt.getUTCFullYear(), p.createdAt.getUTCMonth(), 1));
  const next = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1));
  return {
    id: p.id, platform_id: 'aws', region_id: p.regionId, name: p.name, provisioner: 'k8s-neonvm', pg_version: p.pgVersion,
    proxy_host: '127.0.0.1', branch_logical_size_limit: 0, branch_logical_size_limit_bytes: 0, store_passwords: true,
    cpu_used_sec: 0, active_time_seconds: 0, compute_time_seconds: 0, written_data_bytes: 0, data_transfer_bytes: 0,
    data_storage_bytes_hour: 0, creation_source: 'console', history_retention_seconds: 86400,
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

export function endpointBody(p: FakeProject) {
  return {
    host: p.host, id: p.endpointId, project_id: p.id, branch_id: p.branchId, region_id: p.regionId,
    autoscaling_limit_min_cu: p.computeUnits[0], autoscaling_limit_max_cu: p.computeUnits[1], type: 'read_write', current_state: p.state,
    ...(p.pending ? { pending_state: p.pending } : {}),
    pooler_enabled: false, pooler_mode: 'transaction', disabled: false, passwordless_access: false,
    creation_source: 'console', created_at: iso(p.createdAt), updated_at: iso(p.createdAt), settings: {},
    proxy_host: '127.0.0.1', suspend_timeout_seconds: p.suspendTimeoutSeconds, provisioner: 'k8s-neonvm',
    ...(p.startedAt ? { started_at: iso(p.startedAt) } : {}),
    ...(p.suspendedAt ? { suspended_at: iso(p.suspendedAt) } : {}),
  };
}

export function branchBody(p: FakeProject) {
  return {
    id: p.branchId, project_id: p.id, name: 'main', current_state: 'ready', state_changed_at: iso(p.createdAt),
    creation_source: 'console', created_at: iso(p.createdAt), updated_at: iso(p.createdAt), default: true, protected: false,
    cpu_used_sec: 0, active_time_seconds: 0, compute_time_seconds: 0, written_data_bytes: 0, data_transfer_bytes: 0,
  };
}

export function roleBody(p: FakeProject, name: string, withPassword: boolean) {
  const r = p.roles.get(name)!;
  return {
    branch_id: p.branchId, name, protected: false, created_at: iso(r.createdAt), updated_at: iso(r.updatedAt),
    ...(withPassword ? { password: r.password } : {}),
  };
}

export function databaseBody(p: FakeProject, db: FakeProject['databases'][number]) {
  return { id: db.id, branch_id: p.branchId, name: db.name, owner_name: db.owner, created_at: iso(db.createdAt), updated_at: iso(db.createdAt) };
}

export function operationBody(op: FakeOperation) {
  return {
    id: op.id, project_id: op.projectId, branch_id: op.branchId, ...(op.endpointId ? { endpoint_id: op.endpointId } : {}),
    action: op.action, status: op.status, ...(op.error ? { error: op.error } : {}), failures_count: op.status === 'failed' ? 1 : 0,
    created_at: iso(op.createdAt), updated_at: iso(op.updatedAt), total_duration_ms: op.updatedAt.getTime() - op.createdAt.getTime(),
  };
}

export function connectionUriBody(p: FakeProject, port: number) {
  const db = p.databases[0]!;
  const password = p.roles.get(db.owner)!.password;
  return {
    connection_uri: `postgresql://${db.owner}:${password}@${p.host}:${port}/${db.name}?sslmode=verify-full`,
    connection_parameters: { database: db.name, password, role: db.owner, host: p.host, pooler_host: p.host },
  };
}

export const errorBody = (code: string, message: string) => ({ code, message, request_id: `fake-${Date.now().toString(36)}` });
