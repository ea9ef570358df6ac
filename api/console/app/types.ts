// The shapes of the API's answers the console reads (see /v1/openapi.json).

export type State = 'suspended' | 'starting' | 'running' | 'stopping' | 'failed';

export const QUOTA_FIELDS = ['compute_time_seconds', 'compute_unit_seconds', 'data_transfer_bytes', 'written_data_bytes', 'storage_bytes', 'max_connections', 'max_client_connections'] as const;
export type QuotaName = (typeof QUOTA_FIELDS)[number];
export type Quotas = Partial<Record<QuotaName, number | null>>;

export interface Database {
  id: string;
  partner_id: string;
  user_id: string;
  name: string | null;
  region: string;
  endpoint_id: string;
  host: string;
  port: number;
  role: string;
  database: string;
  roles: string[];
  /** The generated CA's PEM (no key needed); null with a configured certificate. */
  ca_certificate_url: string | null;
  suspend_timeout_seconds: number;
  quotas: Quotas;
  /** The size range in compute units, and the size its compute holds now (0 while suspended). */
  autoscaling: { min_cu: number; max_cu: number };
  current_cu: number;
  state: State;
  connections: number;
  last_active_at: string | null;
  created_at: string;
}

export interface DatabaseList {
  databases: Database[];
  next_cursor: string | null;
}

export interface Credentials {
  role: string;
  password: string;
  connection_uri: string;
  connection_uri_no_sni: string;
}

export type Usage = Record<string, number>;

export interface DatabaseUsage {
  database_id: string;
  granularity: string;
  from: string;
  to: string;
  periods: { period_start: string; usage: Usage }[];
}

export interface Partner {
  id: string;
  name: string;
  created_at: string;
}

export interface PartnerWithKey extends Partner {
  api_key: string;
}

export interface Fleet {
  partners: number;
  databases: number;
  databases_by_partner: Record<string, number>;
  computes_active: number;
  wakes_total: { ok: number; failed: number };
  auth_failures_total: number;
  connections_total: Record<string, number>;
  counters_since: string;
}

export interface Token {
  token: string;
  role: string;
  expires_at: string;
}

export interface Branch {
  id: string;
  database_id: string;
  name: string;
  parent: string | null;
  parent_time: string | null;
  parent_lsn: string | null;
  endpoint_id: string;
  host: string;
  port: number;
  database: string;
  role: string;
  connection_uri: string;
  connection_uri_no_sni: string;
  state: State;
  earliest_restorable_at: string | null;
  expires_at: string | null;
  created_at: string;
}

export interface EventItem {
  id: string;
  type: string;
  created_at: string;
  partner_id: string | null;
  database_id: string | null;
  data: Record<string, unknown>;
}

export interface EventList {
  events: EventItem[];
  next_cursor: string | null;
}

export interface RefusedLogin {
  at: string;
  reason: string;
  why: string;
  endpoint?: string;
  role?: string;
  client?: string;
}

export interface Failures {
  refused_logins: { since: string; by_reason: Record<string, number>; recent: RefusedLogin[] };
  failed_wakes: EventItem[];
  webhook_failures: {
    delivery_id: number; webhook_id: string; partner_id: string | null; url: string; event_type: string; state: string;
    attempts: number; last_status: number | null; last_error: string | null; next_attempt_at: string | null;
  }[];
}

export interface PartnerUsage {
  from: string;
  to: string;
  partners: { partner_id: string; name: string; usage: Usage }[];
}

/** GET /v1/databases/:id/compute_sizes: each size its compute took, oldest first. */
export interface ComputeSizeHistory {
  database_id: string;
  autoscaling: { min_cu: number; max_cu: number };
  current_cu: number;
  sizes: { at: string; cu: number }[];
}
