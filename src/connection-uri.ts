/** Where end developers reach the proxy. */
export interface PublicAddress {
  /** PGFLEET_DOMAIN: endpoints are `<endpoint>.<domain>`. */
  domain: string;
  port: number;
  /** The serverless door's port (WebSocket + POST /sql), when it is served. */
  httpPort?: number;
}

export interface ConnectionInfo {
  host: string;
  port: number;
  /** Routed by TLS SNI: the host's first label is the endpoint. */
  connection_uri: string;
  /** Routed by the `endpoint=` startup option: for hosts without DNS for each endpoint. */
  connection_uri_no_sni: string;
  /** For Neon's serverless driver: the endpoint host with the serverless door's port (its neonConfig reads that port). */
  serverless_connection_uri?: string;
}

/** The URIs of one role; without a password they name only the role (what the console shows after the password was given out). */
export function connectionInfo(at: PublicAddress, endpointId: string, role: string, password: string | undefined, database: string): ConnectionInfo {
  const host = `${endpointId}.${at.domain}`;
  const auth = password === undefined ? encodeURIComponent(role) : `${encodeURIComponent(role)}:${encodeURIComponent(password)}`;
  const db = encodeURIComponent(database);
  return {
    host,
    port: at.port,
    connection_uri: `postgresql://${auth}@${host}:${at.port}/${db}?sslmode=require`,
    connection_uri_no_sni: `postgresql://${auth}@${at.domain}:${at.port}/${db}?sslmode=require&options=endpoint%3D${endpointId}`,
    ...(at.httpPort === undefined ? {} : { serverless_connection_uri: `postgresql://${auth}@${host}:${at.httpPort}/${db}` }),
  };
}
