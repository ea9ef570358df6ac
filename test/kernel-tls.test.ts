import fs from 'node:fs';
import t from 'tap';
import { detectKernelTls } from '../proxy/kernel-tls.ts';

const files = (ulp: string, modules = '') => (file: string) => (file.endsWith('tcp_available_ulp') ? ulp : file === '/proc/modules' ? modules : '');

t.test('no tls among the ULPs and no tls module: not available, said so', async (t) => {
  const k = detectKernelTls(files('mptcp\n'));
  t.equal(k.available, false);
  t.equal(k.used, false);
  t.match(k.why, /no TLS ULP \(available: mptcp\)/);
});

t.test('the tls ULP, or the tls module loaded: available, and still not used by Node 20', async (t) => {
  t.equal(detectKernelTls(files('mptcp tls\n')).available, true);
  t.equal(detectKernelTls(files('', 'tls 118784 0 - Live 0x0000000000000000\n')).available, true);
  t.equal(detectKernelTls(files('', 'tlsfoo 1 0 - Live\n')).available, false, 'another module whose name begins with tls is not it');
  t.match(detectKernelTls(files('tls')).why, /Node 20 cannot hand/);
});

t.test('files that cannot be read (no /proc): not available, no throw', async (t) => {
  t.equal(detectKernelTls(() => {
    throw new Error('EACCES');
  }).available, false);
});

t.test('this host: what its /proc says', async (t) => {
  let ulps = '';
  try {
    ulps = fs.readFileSync('/proc/sys/net/ipv4/tcp_available_ulp', 'utf8');
  } catch {}
  let modules = '';
  try {
    modules = fs.readFileSync('/proc/modules', 'utf8');
  } catch {}
  t.equal(detectKernelTls().available, ulps.split(/\s+/).includes('tls') || /^tls\s/m.test(modules));
});
