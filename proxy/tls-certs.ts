import 'reflect-metadata'; // @peculiar/x509 needs a Reflect metadata polyfill
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(crypto.webcrypto as Crypto);

/** The proxy's TLS identity. */
export interface TlsIdentity {
  /** PEM: the server certificate first, then any chain. */
  cert: string;
  key: string;
  /** The generated local CA that clients pass as sslrootcert; undefined for a configured certificate. */
  caPath: string | undefined;
}

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
/** A generated server certificate this close to expiry is replaced at start. */
const RENEW_BEFORE = 30 * DAY;

const toPem = (label: string, der: ArrayBuffer) => x509.PemConverter.encode(der, label);

async function exportKey(key: CryptoKey): Promise<string> {
  return toPem('PRIVATE KEY', await crypto.webcrypto.subtle.exportKey('pkcs8', key));
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return crypto.webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, true, ['sign']);
}

function writeSecret(file: string, text: string): void {
  fs.writeFileSync(file, text, { mode: 0o600 });
}

async function createCa(dir: string): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> {
  const keys = await crypto.webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=pgfleet local CA',
    keys,
    signingAlgorithm: SIGNING,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 3650 * DAY),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  writeSecret(path.join(dir, 'ca.key'), await exportKey(keys.privateKey));
  fs.writeFileSync(path.join(dir, 'ca.crt'), cert.toString('pem'));
  return { cert, key: keys.privateKey };
}

async function loadOrCreateCa(dir: string): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> {
  const certFile = path.join(dir, 'ca.crt');
  const keyFile = path.join(dir, 'ca.key');
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) {
    return { cert: new x509.X509Certificate(fs.readFileSync(certFile, 'utf8')), key: await importKey(fs.readFileSync(keyFile, 'utf8')) };
  }
  return createCa(dir);
}

/**
 * The names of the generated certificate: every endpoint host, the domain, and this host by
 * name and loopback address, for the URIs of hosts without DNS per endpoint (`localhost` with
 * the endpoint in options). Node accepts a wildcard only over two labels or more
 * (`*.db.localhost`, not `*.localhost`): hence the default domain.
 */
function subjectNames(domain: string): x509.JsonGeneralName[] {
  return [
    { type: 'dns', value: `*.${domain}` }, { type: 'dns', value: domain }, { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' }, { type: 'ip', value: '::1' },
  ];
}

function coversDomain(cert: x509.X509Certificate, domain: string): boolean {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items.map((n) => n.value) ?? [];
  return subjectNames(domain).every((n) => names.includes(n.value)) && cert.notAfter.getTime() - Date.now() > RENEW_BEFORE;
}

async function issueServerCert(dir: string, domain: string, ca: { cert: x509.X509Certificate; key: CryptoKey }): Promise<void> {
  const keys = await crypto.webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=*.${domain}`,
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: SIGNING,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 397 * DAY),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(subjectNames(domain)),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  writeSecret(path.join(dir, 'server.key'), await exportKey(keys.privateKey));
  fs.writeFileSync(path.join(dir, 'server.crt'), cert.toString('pem'));
}

/**
 * The configured certificate and key, or else a local CA and a `*.<domain>` certificate
 * under `<dataDir>/tls/`, made at first start and reused (renewed when near expiry or when
 * the domain changed).
 */
export async function loadTlsIdentity(opts: { dataDir: string; domain: string; certFile?: string; keyFile?: string }): Promise<TlsIdentity> {
  if (opts.certFile && opts.keyFile) {
    return { cert: fs.readFileSync(opts.certFile, 'utf8'), key: fs.readFileSync(opts.keyFile, 'utf8'), caPath: undefined };
  }
  const dir = path.join(opts.dataDir, 'tls');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await loadOrCreateCa(dir);
  const certFile = path.join(dir, 'server.crt');
  const current = fs.existsSync(certFile) ? new x509.X509Certificate(fs.readFileSync(certFile, 'utf8')) : undefined;
  if (!current || !coversDomain(current, opts.domain) || !(await current.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }))) {
    await issueServerCert(dir, opts.domain, ca);
  }
  const cert = fs.readFileSync(certFile, 'utf8');
  return { cert: `${cert.trimEnd()}\n${ca.cert.toString('pem').trimEnd()}\n`, key: fs.readFileSync(path.join(dir, 'server.key'), 'utf8'), caPath: path.join(dir, 'ca.crt') };
}

/**
 * RFC 5929 tls-server-end-point: the hash of the server certificate, with the hash of its
 * signature algorithm (SHA-256 when that is MD5 or SHA-1). Used by SCRAM-SHA-256-PLUS.
 */
export function serverEndPoint(certPem: string): Buffer {
  const cert = new x509.X509Certificate(x509.PemConverter.decodeFirst(certPem));
  const hash = (cert.signatureAlgorithm.hash?.name ?? 'SHA-256').toUpperCase();
  const algorithm = hash === 'SHA-384' ? 'sha384' : hash === 'SHA-512' ? 'sha512' : 'sha256';
  return crypto.createHash(algorithm).update(Buffer.from(cert.rawData)).digest();
}
