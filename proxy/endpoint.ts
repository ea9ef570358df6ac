/**
 * Which endpoint a connection is for: the SNI's first label, else `endpoint=` in the
 * `options` startup parameter, else a password prefix `endpoint=<id>;<password>`.
 */
import { POOLER_SUFFIX } from '../src/connection-uri.ts';
import { ConnectionRefused } from './errors.ts';

const ENDPOINT_ID = /^ep-[a-z0-9-]{1,60}$/;

export const HOW_TO_NAME_AN_ENDPOINT =
  'Name the endpoint in one of three ways: connect to the host <endpoint>.<domain> with TLS (SNI), ' +
  'add options=endpoint%3D<endpoint> to the connection string (or PGOPTIONS="endpoint=<endpoint>"), ' +
  'or prefix the password: endpoint=<endpoint>;<password>';

/** The endpoint an SNI names: `<ep-…>.<domain>`; any other name (localhost, an IP) names none. */
export function endpointFromSni(servername: string | undefined, domain: string): string | undefined {
  if (!servername) return undefined;
  const name = servername.toLowerCase().replace(/\.$/, '');
  const suffix = `.${domain}`;
  if (!name.endsWith(suffix)) return undefined;
  const label = name.slice(0, -suffix.length);
  return ENDPOINT_ID.test(label) ? label : undefined;
}

/** What pgfleet reads from `options`: the endpoint, and `auth=jwt` (the password is a JWT). */
export interface PgfleetOptions {
  endpoint: string | undefined;
  jwt: boolean;
  /** Everything else, for the compute. */
  rest: string;
}

/**
 * Splits `options` the way Postgres does (whitespace separates, a backslash escapes the next
 * character) and takes out pgfleet's own: `endpoint=<id>` (or `--endpoint=<id>`) and `auth=jwt`.
 */
export function pgfleetOptions(options: string | undefined): PgfleetOptions {
  if (!options) return { endpoint: undefined, jwt: false, rest: '' };
  const tokens = options.match(/(?:\\.|[^\s\\])+/gs) ?? [];
  let endpoint: string | undefined;
  let jwt = false;
  const rest: string[] = [];
  for (const token of tokens) {
    if (/^(?:--)?auth=jwt$/.test(token)) {
      jwt = true;
      continue;
    }
    const m = /^(?:--)?endpoint=(.*)$/s.exec(token);
    if (!m) {
      rest.push(token);
      continue;
    }
    const id = m[1]!.replace(/\\(.)/gs, '$1');
    if (!ENDPOINT_ID.test(id)) throw new ConnectionRefused(`"${id}" is not an endpoint id`, '08004', HOW_TO_NAME_AN_ENDPOINT);
    if (endpoint !== undefined && endpoint !== id) throw new ConnectionRefused('options name two different endpoints', '08004');
    endpoint = id;
  }
  return { endpoint, jwt, rest: rest.join(' ') };
}

/** The endpoint from SNI and options; they must agree when both name one. */
export function endpointFromStartup(sniEndpoint: string | undefined, optionsEndpoint: string | undefined): string | undefined {
  if (sniEndpoint && optionsEndpoint && sniEndpoint !== optionsEndpoint) {
    throw new ConnectionRefused(
      `the TLS server name names endpoint "${sniEndpoint}" but options name "${optionsEndpoint}"`, '08004',
      'Name one endpoint: drop endpoint= from options, or connect to the host of that endpoint.');
  }
  return sniEndpoint ?? optionsEndpoint;
}

/** `ep-…-pooler` names the pooled twin of endpoint `ep-…`. */
export function poolerEndpoint(name: string | undefined): { endpoint: string | undefined; pooled: boolean } {
  return name?.endsWith(POOLER_SUFFIX)
    ? { endpoint: name.slice(0, -POOLER_SUFFIX.length), pooled: true }
    : { endpoint: name, pooled: false };
}

/** `endpoint=<id>;<password>` → both parts; undefined when the password has no such prefix. */
export function endpointFromPassword(password: string): { endpoint: string; password: string } | undefined {
  const m = /^endpoint=([^;]*);(.*)$/s.exec(password);
  if (!m || !ENDPOINT_ID.test(m[1]!)) return undefined;
  return { endpoint: m[1]!, password: m[2]! };
}

/** The endpoint an HTTP Host (`<ep-…>.<domain>[:port]`) names, as endpointFromSni reads a server name. */
export function endpointFromHost(host: string | undefined, domain: string): string | undefined {
  if (!host) return undefined;
  const name = host.startsWith('[') ? undefined : host.replace(/:\d*$/, '');
  return endpointFromSni(name, domain);
}
