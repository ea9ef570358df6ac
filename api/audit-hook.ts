import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuditLog } from '../src/audit.ts';
import { operationIdFor } from './client-friendly.ts';

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Body members never kept, whatever the route. */
const SECRET = /^(secret|password|api_key|token|key)$/i;
const MAX_REQUEST = 8192;

declare module 'fastify' {
  interface FastifyRequest {
    /** What the answer said that the audit log keeps: the made resource's id, or the error code. */
    answered: { id?: string; code?: string } | undefined;
  }
}

/** The body with every secret member replaced (at any depth); a large body is reduced to its member names. */
export function redact(body: unknown): unknown {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, SECRET.test(k) ? '[redacted]' : walk(x)]));
  };
  const out = walk(body);
  const text = JSON.stringify(out ?? null);
  return text.length <= MAX_REQUEST ? out : { truncated: true, members: typeof out === 'object' && out ? Object.keys(out) : [] };
}

function peek(payload: unknown): { id?: string; code?: string } | undefined {
  if (typeof payload !== 'string' || payload.length > 1_000_000) return undefined;
  try {
    const body = JSON.parse(payload) as { id?: unknown; error?: { code?: unknown } };
    return { id: typeof body.id === 'string' ? body.id : undefined, code: typeof body.error?.code === 'string' ? body.error.code : undefined };
  } catch {
    return undefined;
  }
}

/**
 * Every mutation of this scope (an authenticated key's POST, PUT, PATCH or DELETE, whatever its
 * outcome) becomes an audit entry once answered: the key's id, never the key; secrets in the body replaced.
 */
export function auditMutations(app: FastifyInstance, audit: AuditLog): void {
  app.decorateRequest('answered', undefined);
  app.addHook('onSend', async (req: FastifyRequest, _reply: FastifyReply, payload: unknown) => {
    if (MUTATIONS.has(req.method) && req.principal) req.answered = peek(payload);
    return payload;
  });
  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    const p = req.principal;
    if (!MUTATIONS.has(req.method) || !p) return;
    const route = req.routeOptions.url ?? req.url.split('?')[0]!;
    const params = (req.params ?? {}) as Record<string, string>;
    const ok = reply.statusCode < 400;
    const made = reply.statusCode === 201 ? req.answered?.id : undefined;
    // An operator's call about a partner (its keys, its databases, a new one) is that partner's business too.
    const partnerId = p.kind === 'partner' ? p.partnerId
      : req.actedFor ?? (route.startsWith('/v1/partners/:id') ? params.id ?? null : route === '/v1/partners' ? made ?? null : null);
    const target = [params.id, params.branch ?? params.role ?? params.delivery].filter(Boolean).join('/') || made || null;
    const client = String(req.headers['x-pgfleet-client'] ?? req.headers['user-agent'] ?? '').slice(0, 200) || null;
    await audit.record({
      partnerId, actor: p.kind, keyId: p.keyId, client,
      action: (req.routeOptions.schema as { operationId?: string } | undefined)?.operationId ?? operationIdFor(req.method, route),
      method: req.method, route, target, requestId: req.id, sourceAddress: req.ip, status: reply.statusCode,
      result: ok ? 'ok' : req.answered?.code ?? String(reply.statusCode), request: req.body === undefined ? null : redact(req.body),
    }).catch((err) => req.log.error({ err: String(err), action: route }, 'could not write an audit entry'));
  });
}
