/**
 * The serverless door: one HTTP listener (TLS with the proxy's certificate; plain HTTP only with
 * PGFLEET_ALLOW_PLAINTEXT) for Neon's serverless driver. A WebSocket upgrade on any path carries
 * a Postgres session (connection.ts serves it as it serves TCP); `POST /sql` runs SQL over HTTP.
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { SqlSettings } from '../../src/config.ts';
import { type GuardOptions, answerInHttp, guardListener } from '../../src/limits/listener-guard.ts';
import type { Admission, HandshakeProgress } from '../admission.ts';
import { serveConnection } from '../connection.ts';
import type { ConnectionContext } from '../context.ts';
import { InFlight } from '../in-flight.ts';
import { HttpError } from './http-error.ts';
import { CORS_HEADERS, handleSql, send } from './sql-over-http.ts';
import { SqlCodecPool } from './sql-codec-pool.ts';
import { SqlSessionPool } from './sql-session-pool.ts';
import { PREAUTH_MESSAGE_BYTES, allowLargeMessages, webSocketStream } from './websocket-stream.ts';

export interface ServerlessDoor {
  port: number;
  close(): Promise<void>;
}

export interface ServerlessOptions {
  host: string;
  port: number;
  /** The proxy's certificate (chain) and key, PEM. */
  tls: { cert: string; key: string };
  /** The proxy's handshake caps; a WebSocket is in its handshake until it has authenticated. */
  admission: Admission;
  /** The proxy's listener guard (caps shared with it, timeouts, trusted proxies). */
  guard: Omit<GuardOptions, 'answer'>;
  sql: SqlSettings;
}

export async function startServerless(ctx: ConnectionContext, opts: ServerlessOptions): Promise<ServerlessDoor> {
  const secure = !ctx.allowPlaintext;
  const pool = new SqlSessionPool(ctx);
  const sqlDoor = { pool, codec: new SqlCodecPool(), settings: opts.sql };
  const inFlight = new InFlight((err) => ctx.core.log.error({ err }, 'serverless request failed'));

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'OPTIONS') {
      res.writeHead(204, CORS_HEADERS).end();
    } else if (path === '/sql' && req.method === 'POST') {
      inFlight.track(handleSql(req, res, ctx, sqlDoor));
    } else {
      const err = path === '/sql'
        ? new HttpError(405, 'use POST /sql')
        : new HttpError(404, `no such route: ${req.method} ${path}; this listener serves POST /sql and WebSocket upgrades`);
      send(res, err.httpStatus, JSON.stringify({ message: err.message, code: err.sqlstate }), err.httpStatus === 405 ? { Allow: 'POST, OPTIONS' } : {});
    }
  };
  // A peer has the startup timeout for its TLS handshake and then for its request's headers (checked every second).
  const timeoutMs = opts.guard.openingTimeoutMs;
  const httpOptions = { headersTimeout: timeoutMs, requestTimeout: Math.max(timeoutMs, opts.sql.timeoutMs), connectionsCheckingInterval: 1000 };
  const server = secure
    ? https.createServer({ ...opts.tls, minVersion: 'TLSv1.2', handshakeTimeout: timeoutMs, ...httpOptions }, onRequest)
    : http.createServer(httpOptions, onRequest);
  server.keepAliveTimeout = timeoutMs;
  guardListener(server, { ...opts.guard, answer: answerInHttp });

  // Messages are small until the session has authenticated (allowLargeMessages lifts the cap).
  const wss = new WebSocketServer({ noServer: true, maxPayload: PREAUTH_MESSAGE_BYTES, perMessageDeflate: false });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    const admitted = opts.admission.admit(socket as net.Socket);
    if (!admitted.ok) {
      ctx.refusals.note({ client: req.socket.remoteAddress, door: 'websocket', outcome: admitted.reason });
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n${admitted.reason}\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      (socket as net.Socket).setNoDelay?.(true);
      const websocket = { host: requestedHost(req), secure };
      const inHandshake = admitted.progress;
      const progress: HandshakeProgress = {
        startupReceived: () => inHandshake.startupReceived(),
        authenticated: () => {
          inHandshake.authenticated();
          allowLargeMessages(ws);
        },
      };
      serveConnection(webSocketStream(ws), req.socket.remoteAddress ?? '', ctx, inFlight, { websocket, progress });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  server.on('error', (err) => ctx.core.log.error({ err }, 'serverless listener error'));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const ws of wss.clients) ws.terminate();
      server.closeAllConnections();
      await inFlight.drained();
      pool.close();
      sqlDoor.codec.close();
      await closed;
    },
  };
}

/**
 * The host the client wants: the `address` of a WebSocket proxy URL (`…/v2?address=host:port`,
 * the string form of the driver's neonConfig.wsProxy), else the Host header.
 */
function requestedHost(req: http.IncomingMessage): string | undefined {
  const address = new URL(req.url ?? '/', 'http://x').searchParams.get('address');
  return address ?? req.headers.host;
}
