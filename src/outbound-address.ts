/**
 * Where pgfleet may send a request a partner chose (its jwks_uri, its webhook URLs): not to
 * loopback, link-local, private, shared, multicast or otherwise special addresses, checked on the
 * address actually connected to (after DNS resolution), unless the operator allows them.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { BadRequestError } from './errors.ts';

const INTERNAL = new net.BlockList();
for (const [prefix, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) INTERNAL.addSubnet(prefix, bits, 'ipv4');
for (const [prefix, bits] of [
  ['::', 127], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
] as const) INTERNAL.addSubnet(prefix, bits, 'ipv6');

/** True for an address inside the host's or a private network (IPv4-mapped IPv6 judged as IPv4). */
function isInternalAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return INTERNAL.check(mapped[1]!, 'ipv4');
  const family = net.isIP(address);
  if (family === 0) return true;
  return INTERNAL.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export class InternalAddressError extends Error {}

/** A DNS lookup (net's `lookup` option) that fails when any address of the name is internal. */
const publicLookup: net.LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return (callback as (e: Error) => void)(err);
    const internal = addresses.find((a) => isInternalAddress(a.address));
    if (internal || addresses.length === 0) {
      return (callback as (e: Error) => void)(new InternalAddressError(`${hostname} resolves to ${internal?.address ?? 'nothing'}, an internal address`));
    }
    if (options.all) (callback as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  });
};

export interface OutboundUrlRules {
  /** http:// as well as https:// (development and tests). */
  allowHttp: boolean;
  /** Loopback, link-local and private addresses (tests, or partners on the operator's own network). */
  allowInternal: boolean;
}

/**
 * A partner's URL as given (400 naming `field` otherwise): https (or http when allowed), no
 * credentials, no internal address written out; a name is checked on what it resolves to, at each request.
 */
export function checkOutboundUrl(field: string, raw: string, rules: OutboundUrlRules): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new BadRequestError(`${field}: not a valid URL`);
  }
  const allowed = rules.allowHttp ? ['https:', 'http:'] : ['https:'];
  if (!allowed.includes(url.protocol)) throw new BadRequestError(`${field}: must be an ${allowed.join(' or ')} URL`);
  if (url.username || url.password) throw new BadRequestError(`${field}: must not carry credentials`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const internal = net.isIP(host) !== 0 ? isInternalAddress(host) : host === 'localhost' || host.endsWith('.localhost');
  if (!rules.allowInternal && internal) throw new BadRequestError(`${field}: must not name a loopback, link-local or private address`);
  return url.href;
}

export interface OutboundRequest {
  url: URL;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Let requests reach internal addresses (tests, or partners on the operator's own network). */
  allowInternal: boolean;
  /** Largest body read; a longer one fails. */
  maxBytes: number;
  /** The whole request, connect to last byte. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Keeps connections for the next request to the same place (webhook deliveries). */
  agent?: http.Agent;
}

/**
 * One request (no redirects followed) that connects only to public addresses unless allowed and
 * reads a bounded body. The host is resolved once, at connect, and that address is the one
 * checked and used (no second lookup to rebind).
 */
export function outboundRequest(r: OutboundRequest): Promise<{ status: number; body: Buffer }> {
  const host = r.url.hostname.replace(/^\[|\]$/g, '');
  if (!r.allowInternal && net.isIP(host) && isInternalAddress(host)) return Promise.reject(new InternalAddressError(`${host} is an internal address`));
  const request = r.url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(r.url, {
      method: r.method, headers: r.headers, signal: r.signal, agent: r.agent,
      ...(r.allowInternal ? {} : { lookup: publicLookup }),
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > r.maxBytes) req.destroy(new Error(`the response is over ${r.maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 500, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    const limit = r.timeoutMs;
    if (limit !== undefined) {
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${limit / 1000} s`)), limit);
      req.once('close', () => clearTimeout(timer));
    }
    req.on('error', reject);
    req.end(r.body);
  });
}

/** A fetch (GET only) for jose's remote JWKS, over outboundRequest. */
export function outboundFetch(opts: { allowInternal: boolean; maxBytes: number }): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    const { status, body } = await outboundRequest({ url, method: 'GET', headers, signal: init?.signal ?? undefined, ...opts });
    return new Response(new Uint8Array(body), { status });
  }) as typeof fetch;
}
