/**
 * Neon's serverless driver pointed at a local pgfleet: WebSockets and fetch trust the proxy's
 * local CA and reach `ep-….db.localhost` on 127.0.0.1 (Node resolves no `*.localhost` names and
 * refuses wildcard certificates of two labels, so the host name check is left out, as in
 * proxy-clients.test.ts).
 */
import dns from 'node:dns';
import fs from 'node:fs';
import { Agent, fetch as undiciFetch } from 'undici';
import WebSocket from 'ws';
import { neonConfig } from '@neondatabase/serverless';

type LookupCallback = (err: Error | null, address: string | dns.LookupAddress[], family?: number) => void;

/** Every name is 127.0.0.1. */
function loopback(_host: string, options: dns.LookupOptions | LookupCallback, callback?: LookupCallback): void {
  const cb = (typeof options === 'function' ? options : callback)!;
  if (typeof options === 'object' && options.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
}

/** An undici dispatcher trusting `ca`, every name resolved to 127.0.0.1. */
export function trustingAgent(ca: string): Agent {
  return new Agent({ connect: { ca, checkServerIdentity: () => undefined, lookup: loopback } });
}

/** Configures the driver (process-wide neonConfig) for a proxy's serverless door over TLS. */
export function pointDriverAt(f: { proxy: { caPath: string | undefined; httpPort: number | undefined } }): { fetchEndpoint: string; dispatcher: Agent } {
  const ca = fs.readFileSync(f.proxy.caPath!, 'utf8');
  const tlsOptions = { ca, checkServerIdentity: () => undefined, lookup: loopback };
  class TrustingWebSocket extends WebSocket {
    constructor(url: string) {
      super(url, tlsOptions);
    }
  }
  const dispatcher = trustingAgent(ca);
  neonConfig.webSocketConstructor = TrustingWebSocket;
  neonConfig.wsProxy = (host) => `${host}:${f.proxy.httpPort}/v2`;
  const fetchEndpoint = `https://api.localhost:${f.proxy.httpPort}/sql`;
  neonConfig.fetchEndpoint = fetchEndpoint;
  neonConfig.fetchFunction = (url: string, init: object) => undiciFetch(url, { ...init, dispatcher });
  return { fetchEndpoint, dispatcher };
}

/** The database's URI in the form the driver takes (host ep-….db.localhost; the port is the driver's business). */
export function serverlessUri(db: { role: string; password: string; endpointId: string; database: { databaseName: string } }, password = db.password): string {
  return `postgresql://${encodeURIComponent(db.role)}:${encodeURIComponent(password)}@${db.endpointId}.db.localhost/${db.database.databaseName}`;
}
