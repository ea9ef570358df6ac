/** Where end developers reach the proxy, and how they verify it. */
export interface PublicAddress {
  /** PGFLEET_DOMAIN: endpoints are `<endpoint>.<domain>`. */
  domain: string;
  port: number;
  /**
   * The proxy's certificate is PGFLEET_TLS_CERT's, taken to be from a CA clients' systems trust:
   * the URIs verify it (verify-full) with no file. Otherwise it is pgfleet's generated one.
   */
  configuredCertificate?: boolean;
  /** pgfleet's generated local CA, a file of the gateway's host (sslrootcert there), where known. */
  caPath?: string;
  /** The serverless door's port (WebSocket + POST /sql), when it is served. */
  httpPort?: number;
  /** The serverless door speaks plain HTTP and ws:// (PGFLEET_ALLOW_PLAINTEXT). */
  httpPlaintext?: boolean;
}

/** `<endpoint>-pooler` names an endpoint's pooled twin (transaction pooling). */
export const POOLER_SUFFIX = '-pooler';

/** pgJDBC's factory that verifies with the JVM's trusted CAs (its default reads ~/.postgresql/root.crt). */
const JAVA_TRUST = 'sslfactory=org.postgresql.ssl.DefaultJavaSSLFactory';

/** The URIs of one role (API fields; see their descriptions in api/schemas.ts). */
export interface ConnectionInfo {
  host: string;
  port: number;
  connection_uri: string;
  connection_uri_sni: string;
  connection_uri_no_sni: string;
  jdbc_url: string;
  libpq_connection_uri: string;
  pooled_connection_uri: string;
  pooled_connection_uri_no_sni: string;
  pooled_jdbc_url: string;
  pooled_libpq_connection_uri: string;
  /** For Neon's serverless driver, when the serverless door is served: its connection string and neonConfig values. */
  serverless_connection_uri?: string;
  serverless_ws_proxy?: string;
  serverless_fetch_endpoint?: string;
}

/**
 * Whether endpoints live under `localhost` (the default `db.localhost`): the names are the
 * gateway host's own, and most resolvers (glibc without systemd-resolved) know none of them.
 */
export const isLocalDomain = (domain: string) => domain === 'localhost' || domain.endsWith('.localhost');

/** A file path as a URI query value: percent-encoded, slashes kept readable. */
const pathParam = (file: string) => encodeURIComponent(file).replace(/%2F/g, '/');

/**
 * The TLS parameters of each family of clients. A configured certificate is verified with the
 * system's CAs: Node's drivers do so with sslmode=verify-full alone; libpq needs sslrootcert=system
 * (libpq 16+; without it, it looks for ~/.postgresql/root.crt); pgJDBC the JVM's trust store. With
 * the generated CA, sslmode=require, and under a local domain (clients on the gateway's own host)
 * its file as sslrootcert: node-postgres, which verifies even with require, then verifies it.
 */
function tlsParams(at: PublicAddress, local: boolean): { uri: string; libpq: string; jdbc: string } {
  if (at.configuredCertificate && !local) {
    return { uri: 'sslmode=verify-full', libpq: 'sslmode=verify-full&sslrootcert=system', jdbc: `sslmode=verify-full&${JAVA_TRUST}` };
  }
  const uri = `sslmode=require${local && at.caPath ? `&sslrootcert=${pathParam(at.caPath)}` : ''}`;
  return { uri, libpq: uri, jdbc: uri };
}

/**
 * The URIs of one role. Under a local domain the URI to hand out is the `options` form on host
 * `localhost`: it resolves everywhere, and the certificate names `localhost` too. Elsewhere it is
 * the SNI form. Without a password they name only the role (what the console shows after the
 * password was given out).
 */
export function connectionInfo(at: PublicAddress, endpointId: string, role: string, password: string | undefined, database: string): ConnectionInfo {
  const host = `${endpointId}.${at.domain}`;
  const local = isLocalDomain(at.domain);
  const plainHost = local ? 'localhost' : at.domain;
  const auth = password === undefined ? encodeURIComponent(role) : `${encodeURIComponent(role)}:${encodeURIComponent(password)}`;
  const db = encodeURIComponent(database);
  const tls = tlsParams(at, local);
  const sni = (endpoint: string, params = tls.uri) => `postgresql://${auth}@${endpoint}.${at.domain}:${at.port}/${db}?${params}`;
  const noSni = (endpoint: string, params = tls.uri) => `postgresql://${auth}@${plainHost}:${at.port}/${db}?${params}&options=endpoint%3D${endpoint}`;
  const handedOut = local ? noSni : sni;
  const jdbcCredentials = `user=${encodeURIComponent(role)}${password === undefined ? '' : `&password=${encodeURIComponent(password)}`}`;
  const jdbc = (endpoint: string) => (local
    ? `jdbc:postgresql://${plainHost}:${at.port}/${db}?${jdbcCredentials}&${tls.jdbc}&options=endpoint%3D${endpoint}`
    : `jdbc:postgresql://${endpoint}.${at.domain}:${at.port}/${db}?${jdbcCredentials}&${tls.jdbc}`);
  const pooled = `${endpointId}${POOLER_SUFFIX}`;
  return {
    host,
    port: at.port,
    connection_uri: handedOut(endpointId),
    connection_uri_sni: sni(endpointId),
    connection_uri_no_sni: noSni(endpointId),
    jdbc_url: jdbc(endpointId),
    libpq_connection_uri: handedOut(endpointId, tls.libpq),
    pooled_connection_uri: handedOut(pooled),
    pooled_connection_uri_no_sni: noSni(pooled),
    pooled_jdbc_url: jdbc(pooled),
    pooled_libpq_connection_uri: handedOut(pooled, tls.libpq),
    ...(at.httpPort === undefined ? {} : serverless(at, at.httpPort, local ? 'localhost' : host, `postgresql://${auth}@${host}:${at.httpPort}/${db}`)),
  };
}

/**
 * What Neon's serverless driver needs: the connection string (the endpoint host with the door's
 * port, which the driver reads) and neonConfig.wsProxy and .fetchEndpoint. Node resolves no
 * `*.localhost` name, so under a local domain both go to `localhost`, the endpoint riding in the
 * `address` parameter the driver appends to a wsProxy string and in its Neon-Connection-String header.
 */
function serverless(at: PublicAddress, port: number, doorHost: string, uri: string): Pick<ConnectionInfo, 'serverless_connection_uri' | 'serverless_ws_proxy' | 'serverless_fetch_endpoint'> {
  return {
    serverless_connection_uri: uri,
    serverless_ws_proxy: `${doorHost}:${port}/v2`,
    serverless_fetch_endpoint: `${at.httpPlaintext ? 'http' : 'https'}://${doorHost}:${port}/sql`,
  };
}
