import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type PgInstall, PgInstalls } from '../../src/pg/install.ts';
import { type OsUser, resolveComputeUser } from '../../src/pg/os-user.ts';
import { initCluster } from '../../src/pg/server.ts';
import { tmpDataDir } from '../helpers.ts';
import {
  type FakeOperation, type FakeProject, branchBody, connectionUriBody, databaseBody, endpointBody, errorBody, operationBody, projectBody, projectListItemBody, roleBody,
} from './bodies.ts';
import { type Ca, issueServerCert, makeCa } from './certs.ts';
import { FakeCompute } from './fake-compute.ts';
import { FakeProxy } from './fake-proxy.ts';
import { NeonOpenApi, type Route } from './openapi.ts';

export const FAKE_API_KEY = 'fake-neon-api-key-0123456789';

type Answer = { status: number; body?: unknown; headers?: Record<string, string> };
type Handler = (req: { pathParams: Record<string, string>; query: Record<string, any>; body: any }) => Answer | Promise<Answer>;

interface Fault {
  operationId: string;
  status: number;
  times: number;
  retryAfterSeconds: number | undefined;
  /** Carry the request out first, then answer `status` (0: never answer: the client times out). */
  afterWork: boolean;
}

export interface FakeNeonOptions {
  /**
   * Run a real Postgres per project (default). Without, endpoints start and stop in name only:
   * enough for control-plane tests that make hundreds of projects.
   */
  computes?: boolean;
  /** Each request is answered after this long (so that requests overlap). */
  latencyMs?: number;
  /** More requests than this at once are answered 429, as Neon's rate limit does. */
  maxConcurrent?: number;
}

const HOUR = 3_600_000;
const isoHour = (ms: number) => new Date(ms).toISOString();

/**
 * A fake of Neon's API for tests: the subset pgfleet calls, routed and validated by Neon's
 * own OpenAPI document (bad requests and bad responses are recorded in `violations`, and the
 * call fails), with projects whose endpoints are real Postgres servers on loopback addresses
 * (TLS with certificates from `ca`, SCRAM passwords). Faults can be injected: N answers of
 * an HTTP status before success, and operations of an action that never finish.
 */
export class FakeNeon {
  readonly openapi = new NeonOpenApi();
  readonly projects = new Map<string, FakeProject>();
  readonly computes = new Map<string, FakeCompute>();
  readonly operations = new Map<string, FakeOperation>();
  /** Every request: operation, answer status. */
  readonly calls: { operationId: string; method: string; template: string; status: number }[] = [];
  /** Everything that did not follow the OpenAPI document (a test should assert this stays empty). */
  readonly violations: string[] = [];
  /** The CA's certificate file (what PGFLEET_NEON_CA_FILE names). */
  readonly caFile: string;
  private readonly faults: Fault[] = [];
  /** Called after each answer was sent: (operationId, status). */
  onAnswered: ((operationId: string, status: number) => void) | undefined;
  /** Requests being handled now, and the most there ever were at once. */
  inFlight = 0;
  peakInFlight = 0;
  private readonly hung = new Set<http.ServerResponse>();
  /** Each project's "Neon proxy" on its endpoint host: wakes the compute on connect. */
  private readonly proxies = new Map<string, FakeProxy>();
  private readonly stuck = new Set<string>();
  private readonly work = new Set<Promise<void>>();
  private readonly handlers: Record<string, Handler>;
  private nextHost = 2;
  private server: http.Server | undefined;

  private constructor(
    readonly ca: Ca,
    readonly port: number,
    /** Where computes listen, on their own host, behind their proxy (which listens on `port`). */
    private readonly computePort: number,
    readonly baseUrl: string,
    private readonly dir: string,
    private readonly install: PgInstall,
    private readonly user: OsUser,
    private readonly templatePgdata: string,
    readonly options: FakeNeonOptions,
  ) {
    this.caFile = path.join(ca.dir, 'ca.crt');
    this.handlers = {
      createProject: (r) => this.createProject(r.body.project),
      getProject: (r) => ({ status: 200, body: { project: projectBody(this.project(r.pathParams.project_id!)) } }),
      listProjects: (r) => this.listProjects(r.query),
      updateProject: (r) => this.updateProject(this.project(r.pathParams.project_id!), r.body.project),
      listProjectEndpoints: (r) => ({ status: 200, body: { endpoints: [endpointBody(this.project(r.pathParams.project_id!))] } }),
      updateProjectEndpoint: (r) => this.updateEndpoint(this.endpoint(r.pathParams), r.body.endpoint),
      getProjectBranchRolePassword: (r) => {
        const role = this.branch(r.pathParams).roles.get(r.pathParams.role_name!);
        if (!role) throw notFound(`role ${r.pathParams.role_name}`);
        return { status: 200, body: { password: role.password } };
      },
      deleteProject: (r) => this.deleteProject(r.pathParams.project_id!),
      getProjectEndpoint: (r) => ({ status: 200, body: { endpoint: endpointBody(this.endpoint(r.pathParams)) } }),
      startProjectEndpoint: (r) => this.startEndpoint(this.endpoint(r.pathParams)),
      suspendProjectEndpoint: (r) => this.suspendEndpoint(this.endpoint(r.pathParams)),
      getProjectOperation: (r) => {
        const op = this.operations.get(r.pathParams.operation_id!);
        if (!op || op.projectId !== r.pathParams.project_id) throw notFound('operation');
        return { status: 200, body: { operation: operationBody(op) } };
      },
      createProjectBranchRole: (r) => this.createRole(this.branch(r.pathParams), r.body.role.name),
      resetProjectBranchRolePassword: (r) => this.resetPassword(this.branch(r.pathParams), r.pathParams.role_name!),
      getConsumptionHistoryPerProject: (r) => this.consumption(r.query),
    };
  }

  static async start(options: FakeNeonOptions = {}): Promise<FakeNeon> {
    const dir = tmpDataDir('fake-neon');
    const user = resolveComputeUser('postgres');
    const install = PgInstalls.discover(undefined, user, dir).get();
    const templatePgdata = path.join(dir, 'template', 'pgdata');
    if (options.computes !== false) await initCluster(install, user, templatePgdata);
    const port = await freePort();
    const ca = await makeCa(path.join(dir, 'ca'));
    const fake = new FakeNeon(ca, port, await freePort(), '', dir, install, user, templatePgdata, options);
    const server = http.createServer((req, res) => void fake.serve(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake.server = server;
    (fake as { baseUrl: string }).baseUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/api/v2`;
    return fake;
  }

  /** The next `times` calls of operationId answer `status` (with Retry-After when given), and do nothing. */
  failNext(operationId: string, status: number, times: number, retryAfterSeconds?: number): void {
    this.faults.push({ operationId, status, times, retryAfterSeconds, afterWork: false });
  }

  /**
   * The next `times` calls of operationId are carried out, but their answer is lost: a `status`
   * (a 5xx) is sent instead, or with 'timeout' nothing is sent until the client gives up.
   */
  loseAnswer(operationId: string, times: number, status: number | 'timeout'): void {
    this.faults.push({ operationId, status: status === 'timeout' ? 0 : status, times, retryAfterSeconds: undefined, afterWork: true });
  }

  /** Forgets every injected fault not yet spent. */
  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Deletes a project behind pgfleet's back (as someone at Neon's console would). */
  async dropProject(id: string): Promise<void> {
    await this.deleteProject(id);
  }

  /** Operations of this action (e.g. start_compute) start from now on and never finish. */
  stickOperations(action: string, stuck = true): void {
    if (stuck) this.stuck.add(action);
    else this.stuck.delete(action);
  }

  callsOf(operationId: string): number {
    return this.calls.filter((c) => c.operationId === operationId).length;
  }

  async close(): Promise<void> {
    for (const res of this.hung) res.destroy();
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await Promise.allSettled([...this.work]);
    await Promise.all([...this.computes.values()].map((c) => c.destroy()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // --- HTTP ---------------------------------------------------------------------------------

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.inFlight++;
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
    try {
      await this.answer(req, res);
    } finally {
      this.inFlight--;
    }
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const overloaded = this.options.maxConcurrent !== undefined && this.inFlight > this.options.maxConcurrent;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://fake');
    const send = (a: Answer, route?: Route) => {
      if (route) this.calls.push({ operationId: route.operationId, method: route.method, template: route.template, status: a.status });
      const text = a.body === undefined ? '' : JSON.stringify(a.body);
      res.writeHead(a.status, { ...(text ? { 'content-type': 'application/json' } : {}), ...a.headers });
      res.end(text);
      if (route) this.onAnswered?.(route.operationId, a.status);
    };
    const pathname = url.pathname.replace(/^\/api\/v2/, '');
    const found = this.openapi.find(req.method ?? 'GET', pathname);
    if (!found) {
      this.violations.push(`${req.method} ${pathname}: no such path in the OpenAPI document`);
      return send({ status: 404, body: errorBody('NOT_FOUND', 'no such API path') });
    }
    const { route, pathParams } = found;
    if (req.headers.authorization !== `Bearer ${FAKE_API_KEY}`) {
      this.violations.push(`${route.operationId}: not authenticated with the API key`);
      return send({ status: 401, body: errorBody('', 'authentication required') }, route);
    }
    let body: unknown;
    if (chunks.length) {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        this.violations.push(`${route.operationId}: the body is not JSON`);
        return send({ status: 400, body: errorBody('', 'invalid JSON') }, route);
      }
    }
    const checked = this.openapi.checkRequest(route, pathParams, url.searchParams, body);
    if (checked.problems.length) {
      this.violations.push(...checked.problems.map((p) => `${route.operationId} request: ${p}`));
      return send({ status: 400, body: errorBody('', checked.problems.join('; ')) }, route);
    }
    if (this.options.latencyMs) await new Promise((r) => setTimeout(r, this.options.latencyMs));
    if (overloaded) return send({ status: 429, body: errorBody('', 'too many requests') }, route);
    const fault = this.faults.find((f) => f.operationId === route.operationId && f.times > 0);
    let answer: Answer;
    if (fault && !fault.afterWork) {
      fault.times--;
      answer = {
        status: fault.status, body: errorBody('', fault.status === 429 ? 'too many requests' : 'injected failure'),
        headers: fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {},
      };
    } else {
      const handler = this.handlers[route.operationId];
      if (!handler) {
        this.violations.push(`${route.operationId}: not implemented by the fake`);
        return send({ status: 501, body: errorBody('', 'not implemented by the fake') }, route);
      }
      try {
        answer = await handler({ pathParams, query: checked.query, body });
      } catch (err) {
        const status = (err as { status?: number }).status ?? 500;
        if (status === 500) this.violations.push(`${route.operationId}: fake failed: ${(err as Error).message}`);
        answer = { status, body: errorBody('', (err as Error).message) };
      }
    }
    const problems = this.openapi.checkResponse(route, answer.status, answer.body);
    if (problems.length) {
      this.violations.push(...problems.map((p) => `${route.operationId} ${p}`));
      return send({ status: 500, body: errorBody('', 'the fake answered outside the OpenAPI document') }, route);
    }
    if (fault?.afterWork && answer.status < 300) {
      // Done, but the answer is lost on the way.
      fault.times--;
      this.calls.push({ operationId: route.operationId, method: route.method, template: route.template, status: fault.status });
      if (fault.status === 0) {
        this.hung.add(res);
        res.on('close', () => this.hung.delete(res));
        return;
      }
      return send({ status: fault.status, body: errorBody('', 'injected failure after the work was done') });
    }
    send(answer, route);
  }

  // --- model --------------------------------------------------------------------------------

  private project(id: string): FakeProject {
    const p = this.projects.get(id);
    if (!p) throw notFound(`project ${id}`);
    return p;
  }

  private endpoint(params: Record<string, string>): FakeProject {
    const p = this.project(params.project_id!);
    if (p.endpointId !== params.endpoint_id) throw notFound(`endpoint ${params.endpoint_id}`);
    return p;
  }

  private branch(params: Record<string, string>): FakeProject {
    const p = this.project(params.project_id!);
    if (p.branchId !== params.branch_id) throw notFound(`branch ${params.branch_id}`);
    return p;
  }

  private spec(p: FakeProject) {
    return { databases: p.databases, roles: new Map([...p.roles].map(([name, r]) => [name, r.password])) };
  }

  /** An operation that runs `work` in the background, unless its action is stuck. */
  private operation(p: FakeProject, action: string, work: () => Promise<void>, endpoint = false): FakeOperation {
    const now = new Date();
    const op: FakeOperation = {
      id: crypto.randomUUID(), projectId: p.id, branchId: p.branchId, endpointId: endpoint ? p.endpointId : undefined,
      action, status: 'running', error: undefined, createdAt: now, updatedAt: now,
    };
    this.operations.set(op.id, op);
    if (!this.stuck.has(action)) {
      const run = work().then(
        () => { op.status = 'finished'; },
        (err: Error) => { op.status = 'failed'; op.error = err.message; },
      ).finally(() => {
        op.updatedAt = new Date();
        this.work.delete(run);
      });
      this.work.add(run);
    }
    return op;
  }

  /** A connection reached a suspended endpoint: start it (once for all), as Neon's proxy does. */
  private async wakeOnConnect(p: FakeProject): Promise<void> {
    let op: FakeOperation | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
      if (!this.projects.has(p.id)) throw new Error('no such endpoint');
      if (p.state === 'active' && !p.pending) return;
      if (!p.pending) {
        p.pending = 'active';
        op = this.operation(p, 'start_compute', () => this.runCompute(p), true);
      }
      if (op?.status === 'failed') throw new Error(op.error);
    }
    throw new Error('the endpoint did not start');
  }

  private runCompute(p: FakeProject): Promise<void> {
    const compute = this.computes.get(p.id);
    return (compute ? compute.start(this.spec(p)) : Promise.resolve()).then(() => {
      p.state = 'active';
      p.pending = undefined;
      p.startedAt = new Date();
      p.active.push([Date.now(), undefined]);
    });
  }

  private async createProject(req: any): Promise<Answer> {
    const n = this.nextHost++;
    const id = `fake-${crypto.randomBytes(5).toString('hex')}`;
    const owner = req.branch?.role_name ?? 'neondb_owner';
    const now = new Date();
    const p: FakeProject = {
      id, name: req.name ?? id, regionId: req.region_id ?? 'aws-us-east-2', pgVersion: req.pg_version ?? 17, createdAt: now,
      quota: req.settings?.quota ?? {}, suspendTimeoutSeconds: req.default_endpoint_settings?.suspend_timeout_seconds ?? 0,
      defaultSuspendTimeoutSeconds: req.default_endpoint_settings?.suspend_timeout_seconds ?? 0,
      computeUnits: [req.default_endpoint_settings?.autoscaling_limit_min_cu ?? 0.25, req.default_endpoint_settings?.autoscaling_limit_max_cu ?? 0.25],
      branchId: `br-${crypto.randomBytes(5).toString('hex')}`, endpointId: `ep-${crypto.randomBytes(5).toString('hex')}`,
      host: `127.0.${Math.floor(n / 250)}.${(n % 250) + 2}`, state: 'init', pending: 'active', startedAt: undefined, suspendedAt: undefined,
      roles: new Map([[owner, { password: crypto.randomBytes(12).toString('base64url'), createdAt: now, updatedAt: now }]]),
      databases: [{ id: n, name: req.branch?.database_name ?? 'neondb', owner, createdAt: now }], active: [],
    };
    this.projects.set(id, p);
    if (this.options.computes !== false) {
      const cert = await issueServerCert(this.ca, p.host);
      this.computes.set(id, new FakeCompute({
        install: this.install, user: this.user, templatePgdata: this.templatePgdata, dir: path.join(this.dir, 'projects', id),
        socketDir: fs.mkdtempSync(path.join(os.tmpdir(), 'fn-')), host: p.host, port: this.computePort, cert,
      }));
      this.proxies.set(id, await FakeProxy.listen(p.host, this.port, this.computePort, () => this.wakeOnConnect(p)));
    }
    const ops = [
      this.operation(p, 'create_timeline', async () => {}),
      this.operation(p, 'start_compute', () => this.runCompute(p), true),
    ];
    return {
      status: 201,
      body: {
        project: projectBody(p), connection_uris: [connectionUriBody(p, this.port)], roles: [...p.roles.keys()].map((r) => roleBody(p, r, true)),
        databases: p.databases.map((d) => databaseBody(p, d)), operations: ops.map(operationBody), branch: branchBody(p), endpoints: [endpointBody(p)],
      },
    };
  }

  private async deleteProject(id: string): Promise<Answer> {
    const p = this.project(id);
    this.projects.delete(id);
    await this.proxies.get(id)?.close();
    this.proxies.delete(id);
    await this.computes.get(id)?.destroy();
    this.computes.delete(id);
    return { status: 200, body: { project: projectBody(p) } };
  }

  /** Oldest first; the cursor is the last project id of the previous page; `search` matches part of a name or id. */
  private listProjects(q: Record<string, any>): Answer {
    let all = [...this.projects.values()];
    if (q.search) all = all.filter((p) => p.name.includes(q.search) || p.id.includes(q.search));
    const start = q.cursor ? all.findIndex((p) => p.id === q.cursor) + 1 : 0;
    const page = all.slice(start, start + (q.limit ?? 10));
    return {
      status: 200,
      body: { projects: page.map(projectListItemBody), applications: {}, integrations: {}, ...(page.length ? { pagination: { cursor: page[page.length - 1]!.id } } : {}) },
    };
  }

  private updateProject(p: FakeProject, req: any): Answer {
    if (req.settings?.quota) p.quota = req.settings.quota;
    const suspend = req.default_endpoint_settings?.suspend_timeout_seconds;
    if (suspend !== undefined) p.defaultSuspendTimeoutSeconds = suspend;
    return { status: 200, body: { project: projectBody(p), operations: [] } };
  }

  private updateEndpoint(p: FakeProject, req: any): Answer {
    if (req.suspend_timeout_seconds !== undefined) p.suspendTimeoutSeconds = req.suspend_timeout_seconds;
    if (req.autoscaling_limit_min_cu !== undefined) p.computeUnits[0] = req.autoscaling_limit_min_cu;
    if (req.autoscaling_limit_max_cu !== undefined) p.computeUnits[1] = req.autoscaling_limit_max_cu;
    const op = this.operation(p, 'apply_config', async () => {}, true);
    return { status: 200, body: { endpoint: endpointBody(p), operations: [operationBody(op)] } };
  }

  private startEndpoint(p: FakeProject): Answer {
    const ops = p.state === 'active' && !p.pending ? [] : [this.operation(p, 'start_compute', () => this.runCompute(p), true)];
    if (ops.length) p.pending = 'active';
    return { status: 200, body: { endpoint: endpointBody(p), operations: ops.map(operationBody) } };
  }

  private suspendEndpoint(p: FakeProject): Answer {
    if (p.state !== 'active') return { status: 200, body: { endpoint: endpointBody(p), operations: [] } };
    p.pending = 'idle';
    const op = this.operation(p, 'suspend_compute', async () => {
      await this.computes.get(p.id)?.stop();
      p.state = 'idle';
      p.pending = undefined;
      p.suspendedAt = new Date();
      const last = p.active[p.active.length - 1];
      if (last && last[1] === undefined) last[1] = Date.now();
    }, true);
    return { status: 200, body: { endpoint: endpointBody(p), operations: [operationBody(op)] } };
  }

  private roleChange(p: FakeProject, name: string, status: number): Answer {
    const op = this.operation(p, 'apply_config', async () => this.computes.get(p.id)?.apply(this.spec(p)), true);
    return { status, body: { role: roleBody(p, name, true), operations: [operationBody(op)] } };
  }

  private createRole(p: FakeProject, name: string): Answer {
    if (p.roles.has(name)) throw Object.assign(new Error(`role ${name} already exists`), { status: 409 });
    const now = new Date();
    p.roles.set(name, { password: crypto.randomBytes(12).toString('base64url'), createdAt: now, updatedAt: now });
    return this.roleChange(p, name, 201);
  }

  private resetPassword(p: FakeProject, name: string): Answer {
    const role = p.roles.get(name);
    if (!role) throw notFound(`role ${name}`);
    role.password = crypto.randomBytes(12).toString('base64url');
    role.updatedAt = new Date();
    return this.roleChange(p, name, 200);
  }

  /** Hourly compute and active seconds from when each endpoint really ran. */
  private consumption(q: Record<string, any>): Answer {
    const from = Math.floor(Date.parse(q.from) / HOUR) * HOUR;
    const to = Date.parse(q.to);
    const ids: string[] = q.project_ids ?? [...this.projects.keys()];
    const projects = ids.filter((id) => this.projects.has(id)).map((id) => {
      const p = this.projects.get(id)!;
      const consumption = [];
      for (let h = from; h < to; h += HOUR) {
        let ms = 0;
        for (const [s, e] of p.active) ms += Math.max(0, Math.min(e ?? Date.now(), h + HOUR) - Math.max(s, h));
        consumption.push({
          timeframe_start: isoHour(h), timeframe_end: isoHour(h + HOUR), active_time_seconds: Math.round(ms / 1000),
          compute_time_seconds: Math.round(ms / 4000), written_data_bytes: 0, synthetic_storage_size_bytes: 0,
        });
      }
      return { project_id: id, periods: [{ period_id: crypto.randomUUID(), period_plan: 'scale', period_start: p.createdAt.toISOString(), consumption }] };
    });
    return { status: 200, body: { projects } };
  }
}

const notFound = (what: string) => Object.assign(new Error(`${what} not found`), { status: 404 });

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
