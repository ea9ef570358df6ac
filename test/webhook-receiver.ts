// A partner's webhook endpoint for tests: a real HTTP server that checks each delivery's signature as
// the Standard Webhooks specification says (node:crypto, not pgfleet's library), answers as told, and
// applies each event once (by webhook-id), as a receiver that honours idempotency keys does.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  id: string;
  timestamp: number;
  type: string;
  data: any;
  body: any;
  verified: boolean;
  at: number;
  status: number;
}

/** What to answer a delivery: a status (default 200), after a delay; `hang` never answers. */
export type Answer = { status?: number; delayMs?: number; hang?: boolean };

export interface Receiver {
  url: string;
  /** Every request, in arrival order (retries included). */
  received: Received[];
  /** Each event applied once: webhook-id → its payload. */
  applied: Map<string, Received>;
  /** How to answer the next deliveries (a function of the payload), default 200 at once. */
  answer: (r: Received) => Answer;
  close(): Promise<void>;
}

/** Standard Webhooks: base64 HMAC-SHA256 of `${id}.${timestamp}.${body}` under the secret's bytes. */
export function verifySignature(secret: string, id: string, timestamp: string, body: string, header: string): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return header.split(' ').some((s) => s === `v1,${expected}`);
}

export async function startReceiver(secretOf: () => string | undefined): Promise<Receiver> {
  const hanging = new Set<http.ServerResponse>();
  const r: Receiver = {
    url: '', received: [], applied: new Map(), answer: () => ({}),
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const id = String(req.headers['webhook-id']);
      const timestamp = String(req.headers['webhook-timestamp']);
      const secret = secretOf();
      let body: any = {};
      try {
        body = JSON.parse(text);
      } catch {
        /* not a delivery: recorded unverified */
      }
      const got: Received = {
        id, timestamp: Number(timestamp), type: body.type, data: body.data ?? {}, body, at: Date.now(), status: 0,
        verified: secret !== undefined && verifySignature(secret, id, timestamp, text, String(req.headers['webhook-signature'] ?? '')),
      };
      r.received.push(got);
      const a = r.answer(got);
      if (a.hang) {
        hanging.add(res);
        return;
      }
      setTimeout(() => {
        got.status = a.status ?? 200;
        if (got.status >= 200 && got.status < 300 && got.verified && !r.applied.has(id)) r.applied.set(id, got);
        res.writeHead(got.status).end(got.status < 300 ? 'ok' : 'try again');
      }, a.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return r;
}
