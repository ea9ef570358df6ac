import pino, { type Logger } from 'pino';

/** Keys whose values never reach a log line. */
const REDACT = [
  'password', '*.password', 'api_key', '*.api_key', 'token', '*.token',
  'authorization', '*.authorization', 'req.headers.authorization', 'connection_uri', '*.connection_uri', '*.connection_uri_sni', '*.connection_uri_no_sni', '*.jdbc_url',
];

export function createLogger(level: string): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { service: 'pgfleet' } });
}

export type { Logger };
