/**
 * The connection fields of database, role and branch answers (made by src/connection-uri.ts),
 * with descriptions that say which one to use. README's "Connecting from each driver" is the
 * longer form.
 */
import { Type } from 'typebox';

const uri = (description: string) => Type.String({ description });

/** Which URI to use, said once for every field's description. */
const WHICH =
  'Under a *.localhost domain (the default db.localhost) this is the no-SNI form on host localhost, so it equals connection_uri_no_sni; ' +
  'elsewhere the SNI form (connection_uri_sni). With pgfleet\'s generated CA it has sslmode=require, and under a *.localhost domain ' +
  'sslrootcert=<the CA file on the gateway\'s host> (on another machine, fetch ca_certificate_url and put that file\'s path there); ' +
  'with a configured certificate (PGFLEET_TLS_CERT) it has sslmode=verify-full and no file.';

/** URIs of an endpoint and its pooled twin; with a password in a database's or role's answer, without in a branch's. */
export const connectionUriFields = {
  connection_uri: uri(`the URI to hand out: node-postgres, postgres.js, psql and psycopg2 connect with it as pasted (with a configured certificate, psql and psycopg2 take libpq_connection_uri). ${WHICH}`),
  connection_uri_sni: uri('routes by TLS SNI: postgresql://role:password@<endpoint>.<domain>:port/db?sslmode=…; needs DNS for the endpoint host (Node and most resolvers know no *.localhost names)'),
  connection_uri_no_sni: uri('names the endpoint in the options parameter (options=endpoint%3D<endpoint>), on host localhost under a *.localhost domain, else on <domain>: for hosts without DNS per endpoint'),
  libpq_connection_uri: uri(
    'for psql, psycopg2 and other libpq clients: connection_uri, but with a configured certificate sslmode=verify-full&sslrootcert=system ' +
      '(libpq 16 or newer; libpq 15 and older need sslrootcert=<the system\'s CA bundle file>, e.g. /etc/ssl/certs/ca-certificates.crt on Debian and Ubuntu). ' +
      'Node drivers refuse sslrootcert=system (node-postgres reads it as a file): they take connection_uri',
  ),
  jdbc_url: uri('the connection_uri for pgJDBC (JDBC URLs carry no user:password@): jdbc:postgresql://host:port/db?user=…&password=…&…; with a configured certificate it verifies with the JVM\'s trusted CAs (DefaultJavaSSLFactory)'),
  pooled_connection_uri: uri('connection_uri through the transaction pooler (endpoint <endpoint>-pooler): for many short or idle connections; session features (LISTEN, SQL PREPARE, session advisory locks, WITH HOLD cursors) are refused there'),
  pooled_connection_uri_no_sni: uri('connection_uri_no_sni through the transaction pooler (options=endpoint%3D<endpoint>-pooler)'),
  pooled_libpq_connection_uri: uri('libpq_connection_uri through the transaction pooler'),
  pooled_jdbc_url: uri('jdbc_url through the transaction pooler (prepared statements work there)'),
};

/** What Neon's serverless driver (@neondatabase/serverless) needs; present when the serverless door (PGFLEET_HTTP_PORT) is served. */
export const serverlessFields = {
  serverless_connection_uri: Type.Optional(uri(
    "the driver's connection string: postgresql://role:password@<endpoint>.<domain>:<serverless port>/db (the driver reads the port from it)",
  )),
  serverless_ws_proxy: Type.Optional(uri(
    'the value of neonConfig.wsProxy: <host>:<serverless port>/v2 (localhost under a *.localhost domain, which Node does not resolve; the driver appends ?address=<endpoint host>)',
  )),
  serverless_fetch_endpoint: Type.Optional(uri(
    'the value of neonConfig.fetchEndpoint (neon() and transaction() over HTTP): https://<host>:<serverless port>/sql (http:// with PGFLEET_ALLOW_PLAINTEXT, where neonConfig.useSecureWebSocket = false is needed too)',
  )),
};

/** Where anyone (no key) fetches the CA that issued the proxy's certificate. */
export const caCertificateField = {
  ca_certificate_url: Type.Union([Type.String(), Type.Null()], {
    description: "the PEM of pgfleet's generated CA, served without a key (GET /v1/tls/ca.crt on this API's host): sslrootcert for libpq and pgJDBC, " +
      'NODE_EXTRA_CA_CERTS or ssl.ca for Node drivers, on any machine; null with a configured certificate (PGFLEET_TLS_CERT), which clients verify with their system\'s CAs',
  }),
};
