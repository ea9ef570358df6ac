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
import type { PointInTime } from '../../src/providers/point-in-time.ts';
import { isLsn } from '../../src/providers/point-in-time.ts';
import type { HistoryEnd } from '../../src/providers/local/compute-admin.ts';
import {
  type FakeBranch, type FakeEndpoint, type FakeOperation, type FakeProject, branchBody, connectionUriBody, databaseBody, endpointBody, errorBody,
  operationBody, projectBody, projectListItemBody, roleBody,
} from './bodies.ts';
import { type Ca, issueServerCert, makeCa } from './certs.ts';
import { FakeCompute } from './fake-compute.ts';
import { type HistorySource, buildFrom, startHistory } from './fake-history.ts';
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
 * (TLS with certificates from `ca`, SCRAM passwords), and branches with real history: a branch
 * at a past moment or a restore replays archived WAL (fake-history.ts). Faults can be injected: N answers of
 * an HTTP status before success, and operations of an action that never finish.
 */
export class FakeNeon {
  readonly openapi = new NeonOpenApi();
  readonly projects = new Map<string, FakeProject>();
  /** Per endpoint id. */
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
  /** Each endpoint's "Neon proxy" on its host: wakes the compute on connect. */
  private readonly proxies = new Map<string, FakeProxy>();
  /** Per branch: the work on its data and compute, in turn. */
  private readonly branchWork = new Map<string, Promise<void>>();
  /** Per branch: where its history ended when its compute last stopped. */
  private readonly historyEnds = new Map<string, HistoryEnd>();
  private readonly stuck = new Set<string>();
  private readonly work = new Set<Promise<void>>();
  private readonly handlers: Record<string, Handler>;
  private nextHost = 2;
  /**
   * Endpoint hosts are 127.<this>.x.y: the computes of every fake share one port number, free on
   * 127.0.0.1 when chosen, so fakes of test files run side by side must not share addresses too.
   */
  private readonly loopbackNet = 1 + crypto.randomInt(254);
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
      listProjectEndpoints: (r) => {
        const p = this.project(r.pathParams.project_id!);
        return { status: 200, body: { endpoints: [...p.endpoints.values()].map((e) => endpointBody(p, e)) } };
      },
      createProjectEndpoint: (r) => this.createEndpoint(this.project(r.pathParams.project_id!), r.body.endpoint),
      updateProjectEndpoint: (r) => {
        const { p, e } = this.endpoint(r.pathParams);
        return this.updateEndpoint(p, e, r.body.endpoint);
      },
      getProjectBranchRolePassword: (r) => {
        const role = this.branch(r.pathParams).b.roles.get(r.pathParams.role_name!);
        if (!role) throw notFound(`role ${r.pathParams.role_name}`);
        return { status: 200, body: { password: role.password } };
      },
      deleteProject: (r) => this.deleteProject(r.pathParams.project_id!),
      getProjectEndpoint: (r) => {
        const { p, e } = this.endpoint(r.pathParams);
        return { status: 200, body: { endpoint: endpointBody(p, e) } };
      },
      startProjectEndpoint: (r) => {
        const { p, e } = this.endpoint(r.pathParams);
        return this.startEndpoint(p, e);
      },
      suspendProjectEndpoint: (r) => {
        const { p, e } = this.endpoint(r.pathParams);
        return this.suspendEndpoint(p, e);
      },
      getProjectOperation: (r) => {
        const op = this.operations.get(r.pathParams.operation_id!);
        if (!op || op.projectId !== r.pathParams.project_id) throw notFound('operation');
        return { status: 200, body: { operation: operationBody(op) } };
      },
      createProjectBranchRole: (r) => {
        const { p, b } = this.branch(r.pathParams);
        return this.createRole(p, b, r.body.role.name);
      },
      resetProjectBranchRolePassword: (r) => {
        const { p, b } = this.branch(r.pathParams);
        return this.resetPassword(p, b, r.pathParams.role_name!);
      },
      createProjectBranch: (r) => this.createBranch(this.project(r.pathParams.project_id!), r.body ?? {}),
      listProjectBranches: (r) => this.listBranches(this.project(r.pathParams.project_id!), r.query),
      getProjectBranch: (r) => ({ status: 200, body: { branch: branchBody(this.branch(r.pathParams).b) } }),
      deleteProjectBranch: (r) => {
        const { p, b } = this.branch(r.pathParams);
        return this.deleteBranch(p, b);
      },
      restoreProjectBranch: (r) => {
        const { p, b } = this.branch(r.pathParams);
        return this.restoreBranch(p, b, r.body);
      },
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

  private endpoint(params: Record<string, string>): { p: FakeProject; e: FakeEndpoint } {
    const p = this.project(params.project_id!);
    const e = p.endpoints.get(params.endpoint_id!);
    if (!e) throw notFound(`endpoint ${params.endpoint_id}`);
    return { p, e };
  }

  private branch(params: Record<string, string>): { p: FakeProject; b: FakeBranch } {
    const p = this.project(params.project_id!);
    const b = p.branches.get(params.branch_id!);
    if (!b) throw notFound(`branch ${params.branch_id}`);
    return { p, b };
  }

  /** The project's default branch (made with it). */
  mainBranch(p: FakeProject): FakeBranch {
    return p.branches.get(p.defaultBranchId)!;
  }

  /** The read-write endpoint of a branch (the default branch's when none is named). */
  endpointOf(p: FakeProject, branchId = p.defaultBranchId): FakeEndpoint | undefined {
    return [...p.endpoints.values()].find((e) => e.branchId === branchId);
  }

  /** The default branch's endpoint. */
  mainEndpoint(p: FakeProject): FakeEndpoint {
    return this.endpointOf(p)!;
  }

  private spec(b: FakeBranch) {
    return { databases: b.databases, roles: new Map([...b.roles].map(([name, r]) => [name, r.password])) };
  }

  /** An operation that runs `work` in the background, unless its action is stuck. */
  private operation(p: FakeProject, action: string, work: () => Promise<void>, on: { branchId: string; endpointId?: string }): FakeOperation {
    const now = new Date();
    const op: FakeOperation = {
      id: crypto.randomUUID(), projectId: p.id, branchId: on.branchId, endpointId: on.endpointId,
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

  /** Work on a branch's data and its compute, one at a time per branch (as Neon runs a project's operations in turn). */
  private serialized(b: FakeBranch, work: () => Promise<void>): Promise<void> {
    const run = (this.branchWork.get(b.id) ?? Promise.resolve()).then(work);
    this.branchWork.set(b.id, run.catch(() => {}));
    return run;
  }

  private startOperation(p: FakeProject, e: FakeEndpoint): FakeOperation {
    e.pending = 'active';
    return this.operation(p, 'start_compute', () => this.runCompute(p, e), { branchId: e.branchId, endpointId: e.id });
  }

  /** A connection reached a suspended endpoint: start it (once for all), as Neon's proxy does. */
  private async wakeOnConnect(p: FakeProject, e: FakeEndpoint): Promise<void> {
    let op: FakeOperation | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
      if (!this.projects.has(p.id) || !p.endpoints.has(e.id)) throw new Error('no such endpoint');
      if (e.state === 'active' && !e.pending) return;
      if (!e.pending) op = this.startOperation(p, e);
      if (op?.status === 'failed') throw new Error(op.error);
    }
    throw new Error('the endpoint did not start');
  }

  private runCompute(p: FakeProject, e: FakeEndpoint): Promise<void> {
    const b = p.branches.get(e.branchId)!;
    return this.serialized(b, async () => {
      await this.computes.get(e.id)?.start(this.spec(b));
      e.state = 'active';
      e.pending = undefined;
      e.startedAt = new Date();
      e.active.push([Date.now(), undefined]);
    });
  }

  /** Stops the endpoint's compute (its history archived first). */
  private async stopCompute(b: FakeBranch, e: FakeEndpoint): Promise<void> {
    const end = await this.computes.get(e.id)?.stop();
    if (end) this.historyEnds.set(b.id, end);
    e.state = 'idle';
    e.pending = undefined;
    e.suspendedAt = new Date();
    const last = e.active[e.active.length - 1];
    if (last && last[1] === undefined) last[1] = Date.now();
  }

  /** A read-write endpoint for a branch: a host of its own, its "Neon proxy", and its compute. */
  private async addEndpoint(p: FakeProject, b: FakeBranch, settings: { suspend?: number; cu?: [number | undefined, number | undefined] } = {}): Promise<FakeEndpoint> {
    const n = this.nextHost++;
    const e: FakeEndpoint = {
      id: `ep-${crypto.randomBytes(5).toString('hex')}`, projectId: p.id, branchId: b.id, host: `127.${this.loopbackNet}.${Math.floor(n / 250)}.${(n % 250) + 2}`,
      createdAt: new Date(), suspendTimeoutSeconds: settings.suspend ?? p.defaultSuspendTimeoutSeconds,
      computeUnits: [settings.cu?.[0] ?? p.defaultComputeUnits[0], settings.cu?.[1] ?? p.defaultComputeUnits[1]],
      state: 'init', pending: undefined, startedAt: undefined, suspendedAt: undefined, active: [],
    };
    p.endpoints.set(e.id, e);
    if (this.options.computes !== false) {
      const cert = await issueServerCert(this.ca, e.host);
      this.computes.set(e.id, new FakeCompute({
        install: this.install, user: this.user, dir: b.dir,
        socketDir: fs.mkdtempSync(path.join(os.tmpdir(), 'fn-')), host: e.host, port: this.computePort, cert,
      }));
      this.proxies.set(e.id, await FakeProxy.listen(e.host, this.port, this.computePort, () => this.wakeOnConnect(p, e)));
    }
    return e;
  }

  private async removeEndpoint(p: FakeProject, e: FakeEndpoint): Promise<void> {
    p.endpoints.delete(e.id);
    await this.proxies.get(e.id)?.close();
    this.proxies.delete(e.id);
    await this.computes.get(e.id)?.destroy();
    this.computes.delete(e.id);
  }

  private newBranch(p: FakeProject, name: string, from: FakeBranch | undefined, fields: Partial<FakeBranch> = {}): FakeBranch {
    const id = `br-${crypto.randomBytes(5).toString('hex')}`;
    const now = new Date();
    const b: FakeBranch = {
      id, projectId: p.id, name, parentId: from?.id, parentLsn: undefined, parentTimestamp: undefined, isDefault: false,
      createdAt: now, updatedAt: now, dir: path.join(this.dir, 'projects', p.id, id),
      // A child has its parent's roles (same passwords) and databases.
      roles: new Map([...(from?.roles ?? [])].map(([r, v]) => [r, { ...v }])),
      databases: (from?.databases ?? []).map((d) => ({ ...d })), ...fields,
    };
    p.branches.set(id, b);
    return b;
  }

  private async createProject(req: any): Promise<Answer> {
    const id = `fake-${crypto.randomBytes(5).toString('hex')}`;
    const owner = req.branch?.role_name ?? 'neondb_owner';
    const now = new Date();
    const suspend = req.default_endpoint_settings?.suspend_timeout_seconds ?? 0;
    const p: FakeProject = {
      id, name: req.name ?? id, regionId: req.region_id ?? 'aws-us-east-2', pgVersion: req.pg_version ?? 17, createdAt: now,
      quota: req.settings?.quota ?? {}, defaultSuspendTimeoutSeconds: suspend,
      defaultComputeUnits: [req.default_endpoint_settings?.autoscaling_limit_min_cu ?? 0.25, req.default_endpoint_settings?.autoscaling_limit_max_cu ?? 0.25],
      historyRetentionSeconds: req.history_retention_seconds ?? 86400, defaultBranchId: '', branches: new Map(), endpoints: new Map(),
    };
    this.projects.set(id, p);
    const b = this.newBranch(p, req.branch?.name ?? 'main', undefined, { isDefault: true });
    p.defaultBranchId = b.id;
    b.roles.set(owner, { password: crypto.randomBytes(12).toString('base64url'), createdAt: now, updatedAt: now });
    b.databases.push({ id: this.nextHost, name: req.branch?.database_name ?? 'neondb', owner, createdAt: now });
    if (this.options.computes !== false) await startHistory(b.dir, this.templatePgdata, this.user);
    const e = await this.addEndpoint(p, b);
    const ops = [this.operation(p, 'create_timeline', async () => {}, { branchId: b.id }), this.startOperation(p, e)];
    return {
      status: 201,
      body: {
        project: projectBody(p), connection_uris: [connectionUriBody(b, e, this.port)], roles: [...b.roles.keys()].map((r) => roleBody(b, r, true)),
        databases: b.databases.map((d) => databaseBody(b, d)), operations: ops.map(operationBody), branch: branchBody(b), endpoints: [endpointBody(p, e)],
      },
    };
  }

  private async deleteProject(id: string): Promise<Answer> {
    const p = this.project(id);
    this.projects.delete(id);
    for (const e of [...p.endpoints.values()]) await this.removeEndpoint(p, e);
    await Promise.allSettled([...p.branches.keys()].map((b) => this.branchWork.get(b)));
    fs.rmSync(path.join(this.dir, 'projects', id), { recursive: true, force: true });
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
    if (req.history_retention_seconds !== undefined) p.historyRetentionSeconds = req.history_retention_seconds;
    return { status: 200, body: { project: projectBody(p), operations: [] } };
  }

  private updateEndpoint(p: FakeProject, e: FakeEndpoint, req: any): Answer {
    if (req.suspend_timeout_seconds !== undefined) e.suspendTimeoutSeconds = req.suspend_timeout_seconds;
    if (req.autoscaling_limit_min_cu !== undefined) e.computeUnits[0] = req.autoscaling_limit_min_cu;
    if (req.autoscaling_limit_max_cu !== undefined) e.computeUnits[1] = req.autoscaling_limit_max_cu;
    const op = this.operation(p, 'apply_config', async () => {}, { branchId: e.branchId, endpointId: e.id });
    return { status: 200, body: { endpoint: endpointBody(p, e), operations: [operationBody(op)] } };
  }

  private startEndpoint(p: FakeProject, e: FakeEndpoint): Answer {
    const ops = e.state === 'active' && !e.pending ? [] : [this.startOperation(p, e)];
    return { status: 200, body: { endpoint: endpointBody(p, e), operations: ops.map(operationBody) } };
  }

  private suspendEndpoint(p: FakeProject, e: FakeEndpoint): Answer {
    if (e.state !== 'active') return { status: 200, body: { endpoint: endpointBody(p, e), operations: [] } };
    e.pending = 'idle';
    const b = p.branches.get(e.branchId)!;
    const op = this.operation(p, 'suspend_compute', () => this.serialized(b, () => this.stopCompute(b, e)), { branchId: b.id, endpointId: e.id });
    return { status: 200, body: { endpoint: endpointBody(p, e), operations: [operationBody(op)] } };
  }

  private async createEndpoint(p: FakeProject, req: any): Promise<Answer> {
    const b = p.branches.get(req.branch_id);
    if (!b) throw notFound(`branch ${req.branch_id}`);
    if (req.type !== 'read_write') throw refused(400, 'the fake makes read_write endpoints only');
    if (this.endpointOf(p, b.id)) throw refused(409, `branch ${b.id} already has a read_write endpoint`);
    const e = await this.addEndpoint(p, b, { suspend: req.suspend_timeout_seconds, cu: [req.autoscaling_limit_min_cu, req.autoscaling_limit_max_cu] });
    return { status: 201, body: { endpoint: endpointBody(p, e), operations: [operationBody(this.startOperation(p, e))] } };
  }

  private roleChange(p: FakeProject, b: FakeBranch, name: string, status: number): Answer {
    const e = this.endpointOf(p, b.id);
    const op = this.operation(p, 'apply_config', async () => (e ? this.computes.get(e.id)?.apply(this.spec(b)) : undefined), { branchId: b.id, endpointId: e?.id });
    return { status, body: { role: roleBody(b, name, true), operations: [operationBody(op)] } };
  }

  private createRole(p: FakeProject, b: FakeBranch, name: string): Answer {
    if (b.roles.has(name)) throw refused(409, `role ${name} already exists`);
    const now = new Date();
    b.roles.set(name, { password: crypto.randomBytes(12).toString('base64url'), createdAt: now, updatedAt: now });
    return this.roleChange(p, b, name, 201);
  }

  private resetPassword(p: FakeProject, b: FakeBranch, name: string): Answer {
    const role = b.roles.get(name);
    if (!role) throw notFound(`role ${name}`);
    role.password = crypto.randomBytes(12).toString('base64url');
    role.updatedAt = new Date();
    return this.roleChange(p, b, name, 200);
  }

  // --- history: branches at a moment, restores ------------------------------------------------

  /** Where a branch's history ends now: marked on its running compute, else where its last stop left it. */
  private async historySource(p: FakeProject, b: FakeBranch): Promise<HistorySource> {
    const e = this.endpointOf(p, b.id);
    const compute = e ? this.computes.get(e.id) : undefined;
    if (compute?.running) {
      const end = await compute.historyEnd();
      this.historyEnds.set(b.id, end);
      return { dir: b.dir, end, running: true };
    }
    return { dir: b.dir, end: this.historyEnds.get(b.id), running: false };
  }

  /** historySource in the branch's turn (after the work on it already under way). */
  private historyNow(p: FakeProject, b: FakeBranch): Promise<HistorySource> {
    return new Promise((resolve, reject) => void this.serialized(b, () => this.historySource(p, b).then(resolve, reject)));
  }

  /** A moment of a branch's history, checked as Neon checks it: inside the project's retention, not ahead of now. */
  private pointIn(p: FakeProject, b: FakeBranch, lsn: string | undefined, timestamp: string | undefined): PointInTime | undefined {
    if (lsn !== undefined && timestamp !== undefined) throw refused(400, 'specify either an LSN or a timestamp, not both');
    if (lsn !== undefined) {
      if (!isLsn(lsn)) throw refused(400, `invalid LSN ${lsn}`);
      return { lsn };
    }
    if (timestamp === undefined) return undefined;
    const time = new Date(timestamp);
    if (time.getTime() > Date.now()) throw refused(400, `timestamp ${timestamp} is in the future`);
    const earliest = Math.max(b.createdAt.getTime(), Date.now() - p.historyRetentionSeconds * 1000);
    if (time.getTime() < earliest) throw refused(400, `timestamp ${timestamp} is outside the history retention (earliest ${new Date(earliest).toISOString()})`);
    return { time };
  }

  private async createBranch(p: FakeProject, req: any): Promise<Answer> {
    const parent = p.branches.get(req.branch?.parent_id ?? p.defaultBranchId);
    if (!parent) throw notFound(`branch ${req.branch?.parent_id}`);
    const at = this.pointIn(p, parent, req.branch?.parent_lsn, req.branch?.parent_timestamp);
    const b = this.newBranch(p, req.branch?.name ?? `br-${crypto.randomBytes(3).toString('hex')}`, parent, {
      parentLsn: at && 'lsn' in at ? at.lsn : undefined, parentTimestamp: at && 'time' in at ? at.time : undefined,
    });
    const build = this.serialized(b, async () => {
      if (this.options.computes === false) return;
      const source = await this.historyNow(p, parent);
      await buildFrom(this.install, this.user, source, b.dir, at);
    });
    const ops = [this.operation(p, 'create_branch', () => build, { branchId: b.id })];
    const endpoints: FakeEndpoint[] = [];
    for (const want of req.endpoints ?? []) {
      if (want.type !== 'read_write' || endpoints.length) throw refused(400, 'the fake makes one read_write endpoint per branch');
      const e = await this.addEndpoint(p, b, { suspend: want.suspend_timeout_seconds, cu: [want.autoscaling_limit_min_cu, want.autoscaling_limit_max_cu] });
      endpoints.push(e);
      ops.push(this.startOperation(p, e));
    }
    return {
      status: 201,
      body: {
        branch: branchBody(b), endpoints: endpoints.map((e) => endpointBody(p, e)), operations: ops.map(operationBody),
        roles: [...b.roles.keys()].map((r) => roleBody(b, r, false)), databases: b.databases.map((d) => databaseBody(b, d)),
      },
    };
  }

  private listBranches(p: FakeProject, q: Record<string, any>): Answer {
    let all = [...p.branches.values()];
    if (q.search) all = all.filter((b) => b.name.includes(q.search) || b.id.includes(q.search));
    return { status: 200, body: { branches: all.map(branchBody), annotations: {} } };
  }

  private async deleteBranch(p: FakeProject, b: FakeBranch): Promise<Answer> {
    if (b.isDefault) throw refused(422, 'cannot delete the default branch');
    if ([...p.branches.values()].some((c) => c.parentId === b.id)) throw refused(422, `branch ${b.id} has child branches`);
    p.branches.delete(b.id);
    for (const e of [...p.endpoints.values()].filter((x) => x.branchId === b.id)) await this.removeEndpoint(p, e);
    const op = this.operation(p, 'delete_timeline', () => this.serialized(b, async () => {
      fs.rmSync(b.dir, { recursive: true, force: true });
    }), { branchId: b.id });
    return { status: 200, body: { branch: branchBody(b), operations: [operationBody(op)] } };
  }

  /**
   * Restores a branch to a moment of its own history or to another branch's (its head, or a
   * moment): its compute stops, its data is rebuilt, its endpoint stays. With preserve_under_name,
   * what it held until now becomes a new branch of that name, and its children move there.
   */
  private restoreBranch(p: FakeProject, b: FakeBranch, req: any): Answer {
    const source = p.branches.get(req.source_branch_id);
    if (!source) throw notFound(`branch ${req.source_branch_id}`);
    const at = this.pointIn(p, source, req.source_lsn, req.source_timestamp);
    const children = [...p.branches.values()].filter((c) => c.parentId === b.id);
    if (!req.preserve_under_name && (source === b || children.length)) {
      throw refused(400, 'preserve_under_name is required when restoring a branch from its own history or when it has children');
    }
    if (source === b && !at) throw refused(400, 'source_timestamp or source_lsn is required to restore a branch from its own history');
    const e = this.endpointOf(p, b.id);
    const preserved = req.preserve_under_name
      ? this.newBranch(p, req.preserve_under_name, undefined, { parentId: b.parentId, roles: b.roles, databases: b.databases, dir: path.join(this.dir, 'projects', p.id, `${b.id}-preserved-${crypto.randomBytes(3).toString('hex')}`) })
      : undefined;
    for (const c of children) c.parentId = preserved!.id;
    b.roles = new Map([...(source === b ? b.roles : source.roles)].map(([r, v]) => [r, { ...v }]));
    b.updatedAt = new Date();
    const work = () => this.serialized(b, async () => {
      if (e && e.state === 'active') await this.stopCompute(b, e);
      if (this.options.computes === false) return;
      if (preserved) {
        fs.renameSync(b.dir, preserved.dir);
        const end = this.historyEnds.get(b.id);
        if (end) this.historyEnds.set(preserved.id, end);
      } else {
        fs.rmSync(b.dir, { recursive: true, force: true });
      }
      this.historyEnds.delete(b.id);
      const from = source === b ? { dir: preserved!.dir, end: this.historyEnds.get(preserved!.id), running: false }
        : await this.historyNow(p, source);
      await buildFrom(this.install, this.user, from, b.dir, at);
    });
    const done = work();
    // The kept branch's data is in place only once the work is done: its own work waits for it.
    if (preserved) void this.serialized(preserved, () => done.catch(() => {}));
    const op = this.operation(p, 'create_timeline', () => done, { branchId: b.id, endpointId: e?.id });
    return { status: 200, body: { branch: branchBody(b), operations: [operationBody(op)] } };
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
        for (const e of p.endpoints.values()) for (const [s, end] of e.active) ms += Math.max(0, Math.min(end ?? Date.now(), h + HOUR) - Math.max(s, h));
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

const refused = (status: number, message: string) => Object.assign(new Error(message), { status });
const notFound = (what: string) => refused(404, `${what} not found`);

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
