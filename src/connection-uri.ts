/** Where end developers reach the proxy. */
export interface PublicAddress {
  /** PGFLEET_DOMAIN: endpoints are `<endpoint>.<domain>`. */
  domain: string;
  port: number;
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
}

export function connectionInfo(at: PublicAddress, endpointId: string, role: string, password: string, database: string): ConnectionInfo {
  const auth = `${encodeURIComponent(role)}:${encodeURIComponent(password)}`;
  const db = encodeURIComponent(database);
  const sni = (endpoint: string) => `postgresql://${auth}@${endpoint}.${at.domain}:${at.port}/${db}?sslmode=require`;
  const noSni = (endpoint: string) => `postgresql://${auth}@${at.domain}:${at.port}/${db}?sslmode=require&options=endpoint%3D${endpoint}`;
  const pooled = `${endpointId}${POOLER_SUFFIX}`;
  return {
    host: `${endpointId}.${at.domain}`,
    port: at.port,
    connection_uri: sni(endpointId),
    connection_uri_no_sni: noSni(endpointId),
    pooled_connection_uri: sni(pooled),
    pooled_connection_uri_no_sni: noSni(pooled),
  };
}
