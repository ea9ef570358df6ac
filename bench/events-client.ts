/**
 * The other side of bench/events.ts, in its own process: a webhook receiver (a plain HTTP server)
 * and the client that changes the databases through the API. Each change names itself (the
 * database's new name), so the receiver times each event from the moment its change was asked for.
 * The receiver stays up for the baseline (bare POSTs from bench/http-load.ts) until told to exit.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ClientSpec {
  apiUrl: string;
  key: string;
  ids: string[];
  rounds: number;
  concurrency: number;
  paced: number;
  pacedPerSecond: number;
}

export interface ClientResult {
  /** The outbox alone: a backlog of changes made while the receiver held every request, then let through. */
  backlog: { changes: number; changeSeconds: number; drainSeconds: number };
  throughput: { changes: number; changeSeconds: number; deliveredSeconds: number; latencies: number[]; afterAnswer: number[] };
  paced: { latencies: number[]; afterAnswer: number[] };
  /** The receiver, for the baseline. */
  url: string;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;
const changedAt = new Map<string, number>();
const answeredAt = new Map<string, number>();
const arrived = new Map<string, number>();
let onArrival: (() => void) | undefined;
/** While set, the receiver answers nothing until it settles (the backlog phase). */
let gate: Promise<void> | undefined;

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    await gate;
    const at = now();
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const name = body.data?.changes?.name ?? body.name;
    if (typeof name === 'string' && !arrived.has(name)) arrived.set(name, at);
    res.end('ok');
    onArrival?.();
  });
});

async function api(spec: ClientSpec, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${spec.apiUrl}${path}`, { method, headers: { authorization: `Bearer ${spec.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Runs fn over items, n at a time. */
async function pooled<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

const waitFor = (names: string[]) => new Promise<void>((resolve) => {
  const check = () => names.every((n) => arrived.has(n)) && resolve();
  onArrival = check;
  check();
});

/**
 * One change: a new name for the database. Its time is when the request left (the commit is a few
 * ms later, and a delivery may beat the answer), so a latency here is an upper bound.
 */
async function change(spec: ClientSpec, id: string, name: string): Promise<void> {
  changedAt.set(name, now());
  await api(spec, 'PATCH', `/v1/databases/${id}`, { name });
  answeredAt.set(name, now());
}

const latencies = (names: string[]) => names.map((n) => arrived.get(n)! - changedAt.get(n)!);
/** From the API's answer (the change committed before it) to the delivery; below 0 when the delivery came first. */
const afterAnswer = (names: string[]) => names.map((n) => arrived.get(n)! - answeredAt.get(n)!);

async function run(spec: ClientSpec): Promise<ClientResult> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  await api(spec, 'POST', '/v1/webhooks', { url, events: ['database.updated'] });

  // The outbox alone: every database changes `rounds` times while the receiver holds its answers;
  // then it lets them through, and the backlog drains.
  let open!: () => void;
  gate = new Promise((r) => (open = r));
  const held = Array.from({ length: spec.rounds }, (_, r) => spec.ids.map((id, i) => ({ id, name: `q${r}-${i}` }))).flat();
  const q0 = now();
  await pooled(held, spec.concurrency, (c) => change(spec, c.id, c.name));
  const backlogChanges = (now() - q0) / 1000;
  const g0 = now();
  open();
  gate = undefined;
  await waitFor(held.map((c) => c.name));
  const backlog = { changes: held.length, changeSeconds: backlogChanges, drainSeconds: (now() - g0) / 1000 };

  // Under load: every database changes once more, as fast as the API takes it, with the receiver open.
  const names = spec.ids.map((id, i) => ({ id, name: `t-${i}` }));
  const t0 = now();
  await pooled(names, spec.concurrency, (c) => change(spec, c.id, c.name));
  const changeSeconds = (now() - t0) / 1000;
  await waitFor(names.map((c) => c.name));
  const deliveredSeconds = (Math.max(...names.map((c) => arrived.get(c.name)!)) - t0) / 1000;
  const throughput = { changes: names.length, changeSeconds, deliveredSeconds, latencies: latencies(names.map((c) => c.name)), afterAnswer: afterAnswer(names.map((c) => c.name)) };

  // Latency at a steady pace, the outbox otherwise idle.
  const paced: string[] = [];
  for (let i = 0; i < spec.paced; i++) {
    const name = `p-${i}`;
    paced.push(name);
    await change(spec, spec.ids[i % spec.ids.length]!, name);
    await new Promise((r) => setTimeout(r, 1000 / spec.pacedPerSecond));
  }
  await waitFor(paced);

  return { backlog, throughput, paced: { latencies: latencies(paced), afterAnswer: afterAnswer(paced) }, url };
}

process.once('message', (spec: ClientSpec) => {
  run(spec).then((result) => {
    process.send!(result);
    process.once('message', () => process.exit(0));
  }, (err) => {
    console.error(err);
    process.exit(1);
  });
});
