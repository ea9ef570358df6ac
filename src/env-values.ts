import fs from 'node:fs';
import { ConfigError } from './errors.ts';
import { parseSecretKey } from './secret-box.ts';

/** The environment a configuration is read from. */
export type Env = Record<string, string | undefined>;

/** A whole number between min and max; the fallback when unset. */
export function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** A string; the fallback when unset or empty. */
export function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === '' ? fallback : v;
}

/** A string, or undefined when unset or empty. */
export function optional(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** A TCP port (0 = any free one). */
export function port(env: Env, name: string, fallback: number): number {
  return int(env, name, fallback, 0, 65535);
}

/** One of the values named. */
export function oneOf<T extends string>(env: Env, name: string, values: readonly T[], fallback: T): T {
  const v = str(env, name, fallback);
  if (!(values as readonly string[]).includes(v)) throw new ConfigError(name, `must be one of ${values.join(', ')}, got "${v}"`);
  return v as T;
}

/** true/false, 1/0, yes/no, on/off; false when unset. */
export function bool(env: Env, name: string): boolean {
  const raw = env[name];
  return raw === undefined || raw === '' ? false : truth(raw, name, 'must');
}

/** true/false, 1/0, yes/no, on/off, in a variable or a part of one (`what` says which: "path_style must"). */
export function truth(raw: string, name: string, what: string): boolean {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(name, `${what} be true or false, got "${raw}"`);
}

/** A URL with one of the protocols named, or undefined when unset. */
export function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = optional(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a valid URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got ${parsed.protocol}`);
  }
  return raw;
}

/** A Postgres memory size such as 16MB. */
export function memory(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  if (!/^\d+(kB|MB|GB)$/.test(v)) throw new ConfigError(name, `must look like 16MB, got "${v}"`);
  return v;
}

/** PGFLEET_SECRET_KEY: 32 bytes as 64 hex digits or base64. */
export function secretKey(env: Env): Buffer | undefined {
  const raw = optional(env, 'PGFLEET_SECRET_KEY');
  if (raw === undefined) return undefined;
  const key = parseSecretKey(raw);
  if (!key) throw new ConfigError('PGFLEET_SECRET_KEY', 'must be 32 bytes written as 64 hex digits or as base64');
  return key;
}

/** The PEM certificate(s) in the file a variable names. */
export function pemFile(env: Env, name: string): string | undefined {
  const file = optional(env, name);
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(name, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(name, `${file} holds no PEM certificate`);
  return text;
}
