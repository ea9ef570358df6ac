import net from 'node:net';
import { ConfigError } from '../errors.ts';

/**
 * PGFLEET_TRUSTED_PROXIES: the load balancers (addresses or CIDRs, comma-separated) that put a
 * PROXY protocol v2 header before each connection, naming the client behind them.
 */
export class TrustedProxies {
  private readonly list = new net.BlockList();

  constructor(readonly entries: string[]) {
    for (const entry of entries) {
      const [address, bits] = entry.split('/') as [string, string | undefined];
      const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
      const max = family === 'ipv4' ? 32 : 128;
      if (!family || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) {
        throw new ConfigError('PGFLEET_TRUSTED_PROXIES', `"${entry}" is not an address or a CIDR (a.b.c.d/n, x::y/n)`);
      }
      if (bits === undefined) this.list.addAddress(address, family);
      else this.list.addSubnet(address, Number(bits), family);
    }
  }

  static parse(text: string | undefined): TrustedProxies {
    return new TrustedProxies((text ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  }

  /** Whether connections from this peer come through a trusted proxy (IPv4-mapped IPv6 counts as IPv4). */
  has(address: string | undefined): boolean {
    if (!address || this.entries.length === 0) return false;
    return this.list.check(address, net.isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}
