/**
 * Kernel TLS: whether this host's kernel offers the TLS upper-layer protocol (the `tls` ULP), and
 * what pgfleet does with it. Said once at start; the relay stays in user space either way.
 *
 * How far Node 20 goes: not far enough to use it. OpenSSL 3 turns kTLS on only for a socket BIO
 * (SSL_OP_ENABLE_KTLS; Node does not even export the constant), and Node's TLS never gives OpenSSL
 * the socket: it runs OpenSSL over memory buffers fed by libuv, so the keys cannot reach the kernel
 * through OpenSSL. The rest of a hand-over can be had in JavaScript: the `keylog` event gives the
 * TLS 1.3 traffic secrets (key and IV follow by HKDF-Expand-Label), and a session whose handshake
 * just ended has sent and received no application records, so the sequence numbers are known. What
 * Node lacks is the kernel side: setsockopt(TCP_ULP, "tls") and setsockopt(SOL_TLS, TLS_TX/TLS_RX,
 * tls12_crypto_info_aes_gcm_128|256) on the socket's descriptor, and a way to take the descriptor
 * back from the TLSSocket with nothing buffered in OpenSSL. A native path needs an addon (or a
 * runtime with FFI) that, at ReadyForQuery after authentication: stops reading, checks OpenSSL holds
 * no unread record, makes both setsockopt calls with the derived keys and sequence numbers, and
 * hands the plain descriptor to a net.Socket (new net.Socket({ fd })) that the relay then pipes;
 * TLS 1.3 key updates and alerts arrive as control messages the relay must then handle (or refuse).
 */
import fs from 'node:fs';

export interface KernelTls {
  /** The kernel offers the `tls` ULP. */
  available: boolean;
  /** Whether pgfleet's relay uses it (never, in Node 20: see above). */
  used: false;
  /** In words, for the start-up log. */
  why: string;
}

type Read = (file: string) => string;
const readText: Read = (file) => fs.readFileSync(file, 'utf8');

/** Reads /proc/sys/net/ipv4/tcp_available_ulp (else /proc/modules); `read` is replaceable for tests. */
export function detectKernelTls(readFile: Read = readText): KernelTls {
  const read = (file: string) => {
    try {
      return readFile(file);
    } catch {
      return ''; // no /proc, or not readable: as if absent
    }
  };
  const ulps = read('/proc/sys/net/ipv4/tcp_available_ulp').split(/\s+/).filter(Boolean);
  const module = /^tls\s/m.test(read('/proc/modules'));
  if (!ulps.includes('tls') && !module) {
    return { available: false, used: false, why: `the kernel offers no TLS ULP (available: ${ulps.join(', ') || 'none'}); TLS runs in OpenSSL in user space` };
  }
  return {
    available: true,
    used: false,
    why: 'the kernel offers the TLS ULP, but Node 20 cannot hand a session\'s keys to it (OpenSSL runs over memory buffers, '
      + 'and Node has no setsockopt); TLS runs in OpenSSL in user space',
  };
}
