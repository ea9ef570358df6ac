/** Where end developers reach the proxy. */
export interface PublicAddress {
  /** PGFLEET_DOMAIN: endpoints are `<endpoint>.<domain>`. */
  domain: string;
  port: number;
  /** pgfleet's own local CA (sslrootcert), when the proxy's certificate is the generated one. */
  caPath?: string;
  /** The serverless door's port (WebSocket + POST /sql), when it is served. */
  httpPort?: number;
}

/** `<endpoint>-pooler` names an endpoint's pooled twin (transaction pooling). */
export const POOLER_SUFFIX = '-pooler';

export interface ConnectionInfo {
  host: string;
  port: number;
  /** The URI to hand out: connects when pasted into psql, psycopg2, node-postgres and postgres.js on this install. */
  connection_uri: string;
  /** Routed by TLS SNI: the host's first label is the endpoint (needs DNS for `<endpoint>.<domain>`). */
  connection_uri_sni: string;
  /** Routed by the `endpoint=` startup option: for hosts without DNS for each endpoint. */
  connection_uri_no_sni: string;
  /** The same for pgJDBC (no user:password@ there). */
  jdbc_url: string;
  /** The same database through the transaction pooler (`<endpoint>-pooler`). */
  pooled_connection_uri: string;
  pooled_connection_uri_no_sni: string;
  /** For Neon's serverless driver: the endpoint host with the serverless door's port (its neonConfig reads that port). */
  serverless_connection_uri?: string;
}

/**
 * Whether endpoints live under `localhost` (the default `db.localhost`): the names are the
 * gateway host's own, and most resolvers (glibc without systemd-resolved) know none of them.
 */
export const isLocalDomain = (domain: string) => domain === 'localhost' || domain.endsWith('.localhost');

/** A file path as a URI query value: percent-encoded, slashes kept readable. */
const pathParam = (file: string) => encodeURIComponent(file).replace(/%2F/g, '/');

/**
 * The URIs of one role. Under a local domain the URI to hand out is the `options` form on host
 * `localhost` with the local CA as sslrootcert: it resolves everywhere, and node-postgres (which
 * verifies with sslmode=require) verifies it, since the certificate names `localhost` too.
 * Without a password they name only the role (what the console shows after the password was given out).
 */
export function connectionInfo(at: PublicAddress, endpointId: string, role: string, password: string | undefined, database: string): ConnectionInfo {
  const host = `${endpointId}.${at.domain}`;
  const local = isLocalDomain(at.domain);
  const plainHost = local ? 'localhost' : at.domain;
  const auth = password === undefined ? encodeURIComponent(role) : `${encodeURIComponent(role)}:${encodeURIComponent(password)}`;
  const db = encodeURIComponent(database);
  // The CA path only means something on the gateway's host, where clients of a local domain are.
  const tls = `sslmode=require${local && at.caPath ? `&sslrootcert=${pathParam(at.caPath)}` : ''}`;
  const sni = (endpoint: string) => `postgresql://${auth}@${endpoint}.${at.domain}:${at.port}/${db}?${tls}`;
  const noSni = (endpoint: string) => `postgresql://${auth}@${plainHost}:${at.port}/${db}?${tls}&options=endpoint%3D${endpoint}`;
  const handedOut = local ? noSni : sni;
  const pooled = `${endpointId}${POOLER_SUFFIX}`;
  const jdbcCredentials = `user=${encodeURIComponent(role)}${password === undefined ? '' : `&password=${encodeURIComponent(password)}`}`;
  return {
    host,
    port: at.port,
    connection_uri: handedOut(endpointId),
    connection_uri_sni: sni(endpointId),
    connection_uri_no_sni: noSni(endpointId),
    jdbc_url: local
      ? `jdbc:postgresql://${plainHost}:${at.port}/${db}?${jdbcCredentials}&${tls}&options=endpoint%3D${endpointId}`
      : `jdbc:postgresql://${host}:${at.port}/${db}?${jdbcCredentials}&${tls}`,
    pooled_connection_uri: handedOut(pooled),
    pooled_connection_uri_no_sni: noSni(pooled),
    ...(at.httpPort === undefined ? {} : { serverless_connection_uri: `postgresql://${auth}@${host}:${at.httpPort}/${db}` }),
  };
}
