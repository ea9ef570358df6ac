/**
 * A bare POST loop in its own process (forked, with IPC): the same HTTP client as webhook
 * deliveries (node:http, kept-alive connections), no catalog and no signing, `concurrency` at a time;
 * sends back each request's latency in ms and the wall time in seconds. bench/events.ts's baseline.
 */
import http from 'node:http';

export interface PostLoopSpec {
  url: string;
  body: string;
  count: number;
  concurrency: number;
}

const spec = await new Promise<PostLoopSpec>((resolve) => process.once('message', resolve));
const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency });
const post = () => new Promise<void>((resolve, reject) => {
  const req = http.request(spec.url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
    res.resume();
    res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
  });
  req.on('error', reject);
  req.end(spec.body);
});
const samples: number[] = [];
let next = 0;
const t0 = process.hrtime.bigint();
await Promise.all(Array.from({ length: spec.concurrency }, async () => {
  while (next++ < spec.count) {
    const start = process.hrtime.bigint();
    await post();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
}));
agent.destroy();
process.send!({ samples, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }, () => process.disconnect());
