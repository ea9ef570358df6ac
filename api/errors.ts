import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { PgfleetError, RateLimitedError } from '../src/errors.ts';

const CODE_BY_STATUS: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
};

const HEADER_NAMES: Record<string, string> = { 'idempotency-key': 'Idempotency-Key' };

/** `quotas.storage_bytes: must be integer`: the bad field first, in the request's own spelling. */
export function describeValidationError(errors: FastifySchemaValidationError[], part: string | undefined): string {
  // "additionalProperties" names the unknown field in its params; prefer it to the generic "schema is false".
  const err = errors.find((e) => e.keyword === 'additionalProperties') ?? errors[0];
  if (!err) return 'invalid request';
  const path = err.instancePath.split('/').filter(Boolean).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const params = err.params as Record<string, unknown>;
  let message = err.message ?? 'is invalid';
  if (err.keyword === 'required') {
    const missing = (params.requiredProperties as string[] | undefined)?.[0] ?? (params.missingProperty as string | undefined);
    if (missing) path.push(missing);
    message = 'is required';
  } else if (err.keyword === 'additionalProperties') {
    const extra = (params.additionalProperties as string[] | undefined)?.[0] ?? (params.additionalProperty as string | undefined);
    if (extra) path.push(extra);
    message = 'is not a known field';
  } else if (err.keyword === 'pattern') {
    message = 'must not contain control characters';
  }
  let field = path.join('.');
  if (part === 'headers') field = HEADER_NAMES[field] ?? field;
  if (!field) field = part === 'body' ? 'body' : (part ?? 'request');
  return `${field}: ${message}`;
}

function send(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type('application/json').send({ error: { code, message } });
}

/**
 * One error shape, `{ "error": { "code", "message" } }`: typed errors keep their status and code,
 * validation errors name the field, anything unexpected is a 500 without details (and is logged).
 */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    if (err.validation) return send(reply, 400, 'bad_request', describeValidationError(err.validation, err.validationContext));
    if (err instanceof RateLimitedError) reply.header('retry-after', String(err.retryAfterSeconds));
    if (err instanceof PgfleetError && err.httpStatus < 500) return send(reply, err.httpStatus, err.code, err.message);
    if (err instanceof PgfleetError && err.code !== 'config_error') {
      req.log.warn({ err: err.message, code: err.code }, 'request failed');
      return send(reply, err.httpStatus, err.code, err.message);
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      // Fastify's body parser errors (bad JSON, empty body …) are about the body as a whole.
      const message = err.code?.startsWith('FST_ERR_CTP_') && status === 400 ? `body: ${err.message}` : err.message;
      return send(reply, status, CODE_BY_STATUS[status] ?? 'bad_request', message);
    }
    req.log.error({ err }, 'unexpected error');
    return send(reply, 500, 'internal', 'internal error; the gateway logged the details');
  });
  app.setNotFoundHandler((req, reply) => send(reply, 404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]!.slice(0, 200)}`));
}
