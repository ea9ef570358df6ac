import type { PgfleetError } from '../src/errors.ts';

/** One relayed connection, as metering and the admin side see it. */
export interface Session {
  endpointId: string;
  branchId: string;
  databaseId: string;
  partnerId: string;
  role: string;
  /** Updated by the relay: plain additions of chunk lengths. */
  bytesFromClient: number;
  bytesToClient: number;
  /** The compute's backend process serving it (a direct session), once known. */
  backendPid?: number;
  /** Ends the session with this error (its compute is being suspended over a quota). */
  terminate(reason: PgfleetError): void;
}
