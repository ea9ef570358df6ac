/**
 * A load generator in its own process (forked, with IPC), as a partner's client would be, so that
 * its work does not queue behind the gateway's: POSTs one JSON body per request, `concurrency` at a
 * time, and sends back each request's latency in ms and the wall time in seconds.
 */

export interface LoadSpec {
  url: string;
  key: string;
  /** Request bodies, sent in order. */
  bodies: unknown[];
  concurrency: number;
}

const { url, key, bodies, concurrency } = await new Promise<LoadSpec>((resolve) => process.once('message', resolve));
const samples: number[] = [];
let next = 0;
const t0 = process.hrtime.bigint();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < bodies.length) {
    const body = bodies[next++];
    const start = process.hrtime.bigint();
    const res = await fetch(url, {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const answer = await res.text();
    if (!res.ok) throw new Error(`${res.status} ${answer}`);
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
}));
process.send!({ samples, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }, () => process.disconnect());
