import net from 'node:net';

/**
 * What Neon's own proxy does for an endpoint host: it accepts every connection, starts the
 * endpoint's compute when it is suspended (one start for many connections), then relays the
 * bytes (TLS included, untouched) to the compute. A connection to an endpoint that cannot be
 * started is closed.
 */
export class FakeProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly host: string,
    private readonly computePort: number,
    /** Resolves once the compute runs (started now if needed); rejects when it cannot. */
    private readonly wake: () => Promise<void>,
  ) {
    this.server = net.createServer((client) => void this.relay(client));
  }

  static async listen(host: string, port: number, computePort: number, wake: () => Promise<void>): Promise<FakeProxy> {
    const proxy = new FakeProxy(host, computePort, wake);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(port, host, () => resolve());
    });
    return proxy;
  }

  private async relay(client: net.Socket): Promise<void> {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => {});
    client.pause();
    try {
      await this.wake();
    } catch {
      client.destroy();
      return;
    }
    if (client.destroyed) return;
    const compute = net.connect(this.computePort, this.host);
    this.sockets.add(compute);
    compute.on('close', () => {
      this.sockets.delete(compute);
      client.destroy();
    });
    compute.on('error', () => client.destroy());
    client.on('close', () => compute.destroy());
    client.pipe(compute);
    compute.pipe(client);
    client.resume();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
