/**
 * The wire vocabulary in one table: every message type byte, request code and field code the
 * proxy reads or writes (PostgreSQL protocol 3, "Message Formats"). Nothing else in proxy/ spells
 * a protocol byte.
 */
export const MSG = {
  // client → server
  query: 0x51, // Q
  parse: 0x50, // P
  bind: 0x42, // B
  describe: 0x44, // D
  execute: 0x45, // E
  close: 0x43, // C
  sync: 0x53, // S
  flush: 0x48, // H
  functionCall: 0x46, // F
  terminate: 0x58, // X
  copyFail: 0x66, // f
  /** PasswordMessage, SASLInitialResponse and SASLResponse share it. */
  password: 0x70, // p
  // server → client
  authentication: 0x52, // R
  backendKeyData: 0x4b, // K
  negotiateProtocolVersion: 0x76, // v
  parseComplete: 0x31, // 1
  bindComplete: 0x32, // 2
  closeComplete: 0x33, // 3
  commandComplete: 0x43, // C
  emptyQuery: 0x49, // I
  portalSuspended: 0x73, // s
  rowDescription: 0x54, // T
  noData: 0x6e, // n
  dataRow: 0x44, // D
  error: 0x45, // E
  notice: 0x4e, // N
  notification: 0x41, // A
  readyForQuery: 0x5a, // Z
  parameterStatus: 0x53, // S
  copyIn: 0x47, // G
} as const;

/** The protocol's major version; a StartupMessage's code is it shifted left 16, plus the minor. */
export const PROTOCOL_MAJOR = 3;

/** The Int32 after the length of a message that has no type byte (startup and its kin). */
export const REQUEST_CODE = {
  cancel: 80877102,
  ssl: 80877103,
  gssenc: 80877104,
} as const;

/** The one-byte answers to SSLRequest and GSSENCRequest. */
export const ENCRYPTION = { accepted: 0x53 /* S */, refused: 0x4e /* N */ } as const;

/** The Int32 that starts an Authentication message. */
export const AUTH = { ok: 0, cleartextPassword: 3, sasl: 10, saslContinue: 11, saslFinal: 12 } as const;

/** What Describe and Close name: a prepared statement or a portal. */
export const TARGET = { statement: 0x53 /* S */, portal: 0x50 /* P */ } as const;

/** ReadyForQuery's transaction status. */
export const TX_IDLE = 0x49; // I

/** Field codes of ErrorResponse and NoticeResponse. */
export const ERROR_FIELD = {
  severity: 0x53, // S (localized)
  severityV: 0x56, // V (never localized)
  code: 0x43, // C
  message: 0x4d, // M
  detail: 0x44, // D
  hint: 0x48, // H
} as const;
