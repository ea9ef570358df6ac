/**
 * No text field of any route may hold a control character (U+0000 to U+001F, U+007F): the
 * catalog cannot store a NUL at all, and the others have no business in names, ids, issuers
 * or keys. Checked once for every route, before its schema, so no route can forget it.
 */
import type { FastifyInstance } from 'fastify';
import { BadRequestError } from '../src/errors.ts';

const CONTROL = /[\u0000-\u001f\u007f]/;
/** Deeper than any body the API takes; a deeper one is refused rather than walked. */
const MAX_DEPTH = 16;

/** The path of the first string (value or member name) holding a control character, if any. */
export function controlCharacterAt(value: unknown, path: string, depth = 0): string | undefined {
  if (typeof value === 'string') return CONTROL.test(value) ? path : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  if (depth > MAX_DEPTH) return path;
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  for (const [k, v] of entries) {
    const at = `${path}.${k}`;
    if (CONTROL.test(k)) return at;
    const found = controlCharacterAt(v, at, depth + 1);
    if (found) return found;
  }
  return undefined;
}

export function refuseControlCharacters(app: FastifyInstance): void {
  app.addHook('preValidation', async (req) => {
    for (const [part, value] of [['body', req.body], ['query', req.query], ['params', req.params]] as const) {
      const at = controlCharacterAt(value, part);
      if (at) throw new BadRequestError(`${at.replace(/^(body|query|params)\./, '')}: must not contain control characters`);
    }
  });
}
