/** Where end developers reach the proxy. */
export interface PublicAddress {
  /** PGFLEET_DOMAIN: endpoints are `<endpoint>.<domain>`. */
  domain: string;
  port: number;
  /** The serverless door's port (WebSocket + POST /sql), when it is served. */
  httpPort?: number;
}

/** `<endpoint>-pooler` names an endpoint's pooled twin (transaction pooling). */
export const POOLER_SUFFIX = '-pooler';

export interface ConnectionInfo {
  host: string;
  port: number;
  /** Routed by TLS SNI: the host's first label is the endpoint. */
  connection_uri: string;
  /** Routed by the `endpoint=` startup option: for hosts without DNS for each endpoint. */
  connection_uri_no_sni: string;
  /** The same database through the transaction pooler (`<endpoint>-pooler`). */
  pooled_connection_uri: string;
  pooled_connection_uri_no_sni: string;
  /** For Neon's serverless driver: the endpoint host with the serverless door's port (its neonConfig reads that port). */
  serverless_connection_uri?: string;
}

/** The URIs of one role; without a password they name only the role (what the console shows after the password was given out). */
export function connectionInfo(at: PublicAddress, endpointId: string, role: string, password: string | undefined, database: string): ConnectionInfo {
  const host = `${endpointId}.${at.domain}`;
  const auth = password === undefined ? encodeURIComponent(role) : `${encodeURIComponent(role)}:${encodeURIComponent(password)}`;
  const db = encodeURIComponent(database);
  const sni = (endpoint: string) => `postgresql://${auth}@${endpoint}.${at.domain}:${at.port}/${db}?sslmode=require`;
  const noSni = (endpoint: string) => `postgresql://${auth}@${at.domain}:${at.port}/${db}?sslmode=require&options=endpoint%3D${endpoint}`;
  const pooled = `${endpointId}${POOLER_SUFFIX}`;
  return {
    host,
    port: at.port,
    connection_uri: sni(endpointId),
    connection_uri_no_sni: noSni(endpointId),
    pooled_connection_uri: sni(pooled),
    pooled_connection_uri_no_sni: noSni(pooled),
    ...(at.httpPort === undefined ? {} : { serverless_connection_uri: `postgresql://${auth}@${host}:${at.httpPort}/${db}` }),
  };
}
