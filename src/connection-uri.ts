/** Where end developers reach the proxy. */
export interface PublicAddress {
  /** PGFLEET_DOMAIN: endpoints are `<endpoint>.<domain>`. */
  domain: string;
  port: number;
}

export interface ConnectionInfo {
  host: string;
  port: number;
  /** Routed by TLS SNI: the host's first label is the endpoint. */
  connection_uri: string;
  /** Routed by the `endpoint=` startup option: for hosts without DNS for each endpoint. */
  connection_uri_no_sni: string;
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
  };
}
