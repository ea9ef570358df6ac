import type { ProxyCore } from '../src/gateway.ts';
import type { AuthLimiter } from './auth-limiter.ts';
import type { HandshakeOptions } from './handshake.ts';
import type { Pooler } from './pool/pooler.ts';
import type { RefusalLog } from './refusal-log.ts';
import type { Session } from './session.ts';
import type { WarmBackends } from './warm-backends.ts';

/** What every connection of a proxy listener (and its serverless door) is served with. */
export interface ConnectionContext extends HandshakeOptions {
  core: ProxyCore;
  /** tls-server-end-point hash of the proxy's certificate. */
  channelBinding: Buffer;
  limiter: AuthLimiter;
  /** Log lines of connections that never authenticated (sampled under a flood). */
  refusals: RefusalLog;
  sessions: Set<Session>;
  /** Time allowed from accept to the end of authentication. */
  handshakeTimeoutMs: number;
  /** Sessions count as usage and quotas hold. */
  metering: boolean;
  /** Serves `-pooler` endpoints. */
  pooler: Pooler;
  /** Backends of direct sessions kept for the next client of the same startup. */
  warm: WarmBackends;
  /** Client connections of one database whose quota max_client_connections is unset. */
  databaseMaxClientConnections: number;
  /** Time a client has to answer each step of authentication (the startup timeout). */
  peerTimeoutMs: number;
}
