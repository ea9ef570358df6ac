// Idle sockets that each send one byte, as a descriptor-exhaustion attacker opens them.
import net from 'node:net';

export interface Flood {
  sockets: net.Socket[];
  /** Sockets the server has closed so far. */
  closedByServer(): number;
  /** Sockets whose first reply named this text. */
  answered(text: string): number;
  end(): void;
}

/**
 * Opens `count` sockets from `from` (one address or several, round robin) to 127.0.0.1:port, each
 * sending `first` (default a zero byte: the start of a startup packet; 0x16 starts a TLS record).
 */
export async function flood(port: number, count: number, from: string | string[], first = 0): Promise<Flood> {
  const sources = [from].flat();
  const sockets: net.Socket[] = [];
  const replies = new Map<net.Socket, string>();
  let closed = 0;
  let ending = false;
  const opened: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: sources[i % sources.length] });
    s.on('error', () => {});
    s.on('data', (d: Buffer) => replies.set(s, (replies.get(s) ?? '') + d.toString('latin1')));
    s.once('close', () => {
      if (!ending) closed++;
    });
    opened.push(new Promise((resolve) => {
      s.once('connect', () => {
        s.write(Buffer.from([first]));
        resolve();
      });
      s.once('close', () => resolve());
    }));
    sockets.push(s);
  }
  await Promise.all(opened);
  return {
    sockets,
    closedByServer: () => closed,
    answered: (text) => [...replies.values()].filter((r) => r.includes(text)).length,
    end: () => {
      ending = true;
      for (const s of sockets) s.destroy();
    },
  };
}

export { until } from '../helpers.ts';
