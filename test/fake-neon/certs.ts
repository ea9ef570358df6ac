import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export interface Ca {
  certPem: string;
  dir: string;
}

export interface ServerCert {
  certPem: string;
  keyPem: string;
}

/** A throwaway CA (with openssl), standing in for the public CA that signs Neon's compute hosts. */
export async function makeCa(dir: string, name = 'fake Neon CA'): Promise<Ca> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await execFileAsync('openssl', [
    'req', '-x509', ...EC, '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.crt'), '-days', '30', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { certPem: fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8'), dir };
}

/** A server certificate for an IP address (as its SAN), signed by the CA. */
export function issueServerCert(ca: Ca, ip: string): Promise<ServerCert> {
  return issueServerCertFor(ca, ip, [`IP:${ip}`]);
}

/** A server certificate named `name` with these subject alternative names (`DNS:*.example.test`, `IP:10.0.0.1`), signed by the CA. */
export async function issueServerCertFor(ca: Ca, name: string, altNames: string[]): Promise<ServerCert> {
  const base = path.join(ca.dir, name.replace(/[^\w.-]/g, '_'));
  fs.writeFileSync(`${base}.ext`, `subjectAltName=${altNames.join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await execFileAsync('openssl', ['req', ...EC, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${name}`]);
  await execFileAsync('openssl', [
    'x509', '-req', '-in', `${base}.csr`, '-CA', path.join(ca.dir, 'ca.crt'), '-CAkey', path.join(ca.dir, 'ca.key'), '-CAcreateserial',
    '-days', '30', '-extfile', `${base}.ext`, '-out', `${base}.crt`,
  ]);
  return { certPem: fs.readFileSync(`${base}.crt`, 'utf8'), keyPem: fs.readFileSync(`${base}.key`, 'utf8') };
}
