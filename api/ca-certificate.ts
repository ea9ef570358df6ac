/**
 * The CA that issued the proxy's generated certificate, served to anyone (it is public; clients on
 * other machines need it to verify the proxy), and its URL for the answers that hand out
 * connection strings.
 */
import fs from 'node:fs/promises';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { PublicAddress } from '../src/connection-uri.ts';
import { NotFoundError } from '../src/errors.ts';

export const CA_CERTIFICATE_PATH = '/v1/tls/ca.crt';

/**
 * Where the client that asked can fetch the CA: this API as it was addressed (scheme and Host),
 * so the link works wherever the partner reached the API from; null with a configured certificate.
 */
export function caCertificateUrl(req: FastifyRequest, at: PublicAddress): string | null {
  if (at.configuredCertificate || !at.caPath) return null;
  return req.host ? `${req.protocol}://${req.host}${CA_CERTIFICATE_PATH}` : CA_CERTIFICATE_PATH;
}

/** GET /v1/tls/ca.crt: the PEM, no key needed; 404 when the certificate is configured (clients use their system's CAs). */
export async function caCertificateRoute(app: FastifyInstance, at: PublicAddress): Promise<void> {
  let pem: Promise<Buffer> | undefined;
  app.get(CA_CERTIFICATE_PATH, {
    schema: {
      summary: "The CA that issued the proxy's generated certificate (PEM), for sslrootcert, NODE_EXTRA_CA_CERTS or ssl.ca on any machine; no key needed",
      description: 'Answers 404 when the proxy has a configured certificate (PGFLEET_TLS_CERT): clients verify that one with their system\'s CAs.',
      operationId: 'getCaCertificate',
      tags: ['tls'],
    },
  }, async (_req, reply) => {
    if (at.configuredCertificate || !at.caPath) {
      throw new NotFoundError("the proxy's certificate is configured (PGFLEET_TLS_CERT): verify it with your system's trusted CAs");
    }
    pem ??= fs.readFile(at.caPath);
    // A Buffer goes out as it is, not through the JSON serializer.
    return reply.type('application/x-pem-file').header('cache-control', 'public, max-age=3600').send(await pem);
  });
}
