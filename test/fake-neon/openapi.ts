import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

/** The OpenAPI document that ships inside @neondatabase/api-client. */
export const OPENAPI_FILE = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@neondatabase/api-client/package.json')),
  'public-v2-for-users.gen.yaml',
);

type Json = any;

export interface Route {
  method: string;
  /** The document's path template, e.g. /projects/{project_id}. */
  template: string;
  operationId: string;
  params: Json[];
  operation: Json;
  match(pathname: string): Record<string, string> | undefined;
  literals: number;
}

export function loadOpenApi(): Json {
  return YAML.parse(fs.readFileSync(OPENAPI_FILE, 'utf8'));
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];

/**
 * Neon's OpenAPI document as a checker: finds the operation of a request, and validates
 * path, query and body of requests and the bodies of responses against its schemas.
 * Each check returns the list of problems (empty when it validates).
 */
export class NeonOpenApi {
  readonly doc: Json = loadOpenApi();
  readonly routes: Route[] = [];
  private readonly ajv = new Ajv({ strict: false, allErrors: true, discriminator: true });
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor() {
    addFormats.default(this.ajv);
    for (const f of ['int', 'uint64']) this.ajv.addFormat(f, { type: 'number', validate: (n: number) => Number.isInteger(n) && (f !== 'uint64' || n >= 0) });
    this.ajv.addFormat('', true);
    this.ajv.addSchema({ $id: 'neon', components: { schemas: this.rewrite(this.doc.components.schemas) } });
    for (const [template, item] of Object.entries<Json>(this.doc.paths)) {
      const names: string[] = [];
      const re = new RegExp(`^${template.replace(/\{([^}]+)\}/g, (_, n: string) => (names.push(n), '([^/]+)'))}$`);
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        this.routes.push({
          method: method.toUpperCase(), template, operationId: op.operationId, operation: op,
          params: [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p: Json) => this.deref(p)),
          literals: template.split('/').filter((s) => s && !s.startsWith('{')).length,
          match: (pathname) => {
            const m = re.exec(pathname);
            return m ? Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)])) : undefined;
          },
        });
      }
    }
    // Literal segments win over parameters: /projects/shared before /projects/{project_id}.
    this.routes.sort((a, b) => b.literals - a.literals);
  }

  /** Refs inside the document point at #/components/...; inside ajv they live under the "neon" schema. */
  private rewrite(node: Json): Json {
    if (Array.isArray(node)) return node.map((n) => this.rewrite(n));
    if (node === null || typeof node !== 'object') return node;
    const out: Json = {};
    for (const [k, v] of Object.entries(node)) out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `neon${v}` : this.rewrite(v);
    return out;
  }

  /** Follows a $ref to components (parameters, responses, schemas). */
  deref(node: Json): Json {
    while (node && typeof node.$ref === 'string') {
      node = node.$ref.slice(2).split('/').reduce((o: Json, k: string) => o[k], this.doc);
    }
    return node;
  }

  private validator(key: string, schema: Json): ValidateFunction {
    let v = this.compiled.get(key);
    if (!v) {
      v = this.ajv.compile(this.rewrite(schema));
      this.compiled.set(key, v);
    }
    return v;
  }

  private check(key: string, schema: Json, value: unknown, what: string): string[] {
    const v = this.validator(key, schema);
    if (v(value)) return [];
    return (v.errors ?? []).slice(0, 5).map((e) => `${what}${e.instancePath} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`);
  }

  find(method: string, pathname: string): { route: Route; pathParams: Record<string, string> } | undefined {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const pathParams = route.match(pathname);
      if (pathParams) return { route, pathParams };
    }
    return undefined;
  }

  /** Path and query parameters (query values coerced from strings as the schema says) and the body. */
  checkRequest(route: Route, pathParams: Record<string, string>, query: URLSearchParams, body: unknown): { problems: string[]; query: Record<string, unknown> } {
    const problems: string[] = [];
    const coerced: Record<string, unknown> = {};
    const known = new Set<string>();
    for (const p of route.params) {
      const key = `${route.operationId}:${p.in}:${p.name}`;
      if (p.in === 'path') {
        problems.push(...this.check(key, p.schema, pathParams[p.name], `path ${p.name}`));
      } else if (p.in === 'query') {
        known.add(p.name);
        const values = query.getAll(p.name);
        if (values.length === 0) {
          if (p.required) problems.push(`query ${p.name} is required`);
          continue;
        }
        const value = coerce(this.deref(p.schema), values);
        coerced[p.name] = value;
        problems.push(...this.check(key, p.schema, value, `query ${p.name}`));
      }
    }
    for (const name of new Set(query.keys())) if (!known.has(name)) problems.push(`query ${name} is not a parameter of ${route.operationId}`);
    const rb = this.deref(route.operation.requestBody);
    const schema = rb?.content?.['application/json']?.schema;
    if (body === undefined) {
      if (rb?.required) problems.push('the request body is required');
    } else if (!schema) {
      problems.push(`${route.operationId} takes no request body`);
    } else {
      problems.push(...this.check(`${route.operationId}:body`, schema, body, 'body'));
    }
    return { problems, query: coerced };
  }

  /** The response body against the document's response for that status (or its default). */
  checkResponse(route: Route, status: number, body: unknown): string[] {
    const declared = route.operation.responses[String(status)] ?? route.operation.responses.default;
    if (!declared) return [`${route.operationId} declares no response ${status}`];
    const schema = this.deref(declared).content?.['application/json']?.schema;
    if (!schema) return body === undefined ? [] : [`${route.operationId} response ${status} has no body in the document`];
    return this.check(`${route.operationId}:response:${status in route.operation.responses ? status : 'default'}`, schema, body, `response ${status}`);
  }
}

function coerce(schema: Json, values: string[]): unknown {
  if (schema?.type === 'array') return values.flatMap((v) => v.split(',')).map((v) => coerce(schema.items, [v]));
  const v = values[values.length - 1]!;
  if ((schema?.type === 'integer' || schema?.type === 'number') && /^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (schema?.type === 'boolean' && (v === 'true' || v === 'false')) return v === 'true';
  return v;
}
