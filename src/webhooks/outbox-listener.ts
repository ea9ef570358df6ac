import type pg from 'pg';
import type { Catalog } from '../catalog/catalog.ts';
import { OUTBOX_CHANNEL } from '../events/events.ts';
import type { Logger } from '../log.ts';

const RECONNECT_MS = 1000;

/**
 * One catalog connection that LISTENs for recorded events owed to a webhook (any gateway's), so
 * a delivery starts within milliseconds of its change; lost, it is opened again (the dispatcher
 * polls meanwhile).
 */
export class OutboxListener {
  private client: pg.PoolClient | undefined;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly catalog: Catalog, private readonly onNotify: () => void, private readonly log: Logger) {}

  async start(): Promise<void> {
    try {
      const client = await this.catalog.pool.connect();
      client.on('notification', () => this.onNotify());
      client.on('error', (err) => this.lost(client, err));
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
      if (this.stopped) return client.release(true);
      this.client = client;
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not listen for webhook deliveries; polling until it can');
      this.again();
    }
  }

  private lost(client: pg.PoolClient, err: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.release(err);
    if (!this.stopped) this.again();
  }

  private again(): void {
    if (this.stopped) return;
    this.retry = setTimeout(() => void this.start(), RECONNECT_MS);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    // Destroyed, not returned to the pool: it still listens.
    client?.release(true);
  }
}
