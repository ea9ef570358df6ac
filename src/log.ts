import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

/** Keys whose values never reach a log line. */
const REDACT = [
  'password', '*.password', 'api_key', '*.api_key', 'token', '*.token',
  'authorization', '*.authorization', 'req.headers.authorization', 'connection_uri', '*.connection_uri', '*.connection_uri_sni', '*.connection_uri_no_sni', '*.jdbc_url',
  // Every URI an answer hands out carries the password.
  '*.libpq_connection_uri', '*.pooled_connection_uri', '*.pooled_connection_uri_no_sni', '*.pooled_jdbc_url', '*.pooled_libpq_connection_uri',
  '*.serverless_connection_uri',
];

/** `json`: one JSON object a line, for machines; `pretty`: one readable line per event, for a person at a terminal. */
export type LogFormat = 'json' | 'pretty';

export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  const options = { level, redact: { paths: REDACT, censor: '[redacted]' }, base: { service: 'pgfleet' } };
  if (format === 'json') return pino(options);
  // Synchronous, in this thread: a line is on the terminal before the next one is written.
  return pino(options, pretty({
    sync: true, singleLine: true, colorize: process.stdout.isTTY === true, ignore: 'service,pid,hostname', translateTime: 'SYS:HH:MM:ss.l',
  }));
}

export type { Logger };
