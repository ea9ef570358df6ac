/**
 * Where pgfleet may send a request a partner chose (its jwks_uri): not to loopback, link-local,
 * private, shared, multicast or otherwise special addresses, checked on the address actually
 * connected to (after DNS resolution), unless the operator allows them.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

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
export function isInternalAddress(address: string): boolean {
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

export interface OutboundFetchOptions {
  /** Let requests reach internal addresses (tests, or partners on the operator's own network). */
  allowInternal: boolean;
  /** Largest body read; a longer one fails. */
  maxBytes: number;
}

/**
 * A fetch (GET only, no redirects followed) for jose's remote JWKS that connects only to public
 * addresses and reads a bounded body. The host is resolved once, at connect, and that address
 * is the one checked and used (no second lookup to rebind).
 */
export function outboundFetch(opts: OutboundFetchOptions): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (!opts.allowInternal && net.isIP(host) && isInternalAddress(host)) throw new InternalAddressError(`${host} is an internal address`);
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    const get = url.protocol === 'https:' ? https.get : http.get;
    return new Promise<Response>((resolve, reject) => {
      const req = get(url, { headers, signal: init?.signal ?? undefined, ...(opts.allowInternal ? {} : { lookup: publicLookup }) }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > opts.maxBytes) req.destroy(new Error(`the response is over ${opts.maxBytes} bytes`));
          else chunks.push(chunk);
        });
        res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 500 })));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
  }) as typeof fetch;
}
