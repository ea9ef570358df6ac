import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { WindowCount } from '../limits/window-counters.ts';
import type { Coordinator, HeldLock, Message } from './coordinator.ts';
import { MemoryCoordinator } from './memory-coordinator.ts';

/** How often this gateway puts its held values and shares again (they live three beats). */
export const HEARTBEAT_MS = 5000;
const HELD_TTL_MS = 3 * HEARTBEAT_MS;
const PREFIX = 'pgfleet:';

// INCR in a fixed window: the first increment starts the window.
const INCREMENT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}`;
// A fencing token grows with every grant and with the server's clock (microseconds), so it
// keeps growing across a Redis that restarts empty; the lock holds the holder's token.
const LOCK = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local token = string.format('%d', math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, now))
if redis.call('SET', KEYS[1], token, 'PX', ARGV[1], 'NX') then
  redis.call('SET', KEYS[2], token)
  return token
end
return false`;
// A lock is the holder's fencing token; only that token may release it or check it.
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Coordination through Redis (ioredis). Commands fail fast while Redis is unreachable (no
 * offline queue, a short command timeout) and then fall back to this gateway's own view, kept in
 * a MemoryCoordinator beside: limits count per gateway, locks are per gateway, messages wait in a
 * queue and go out when Redis is back. Nothing Redis holds is the only copy of anything durable.
 */
export class RedisCoordinator implements Coordinator {
  readonly shared = true;
  private readonly local: MemoryCoordinator;
  private readonly handlers = new Map<string, ((m: Message) => void)[]>();
  private readonly reconnectHandlers: (() => void)[] = [];
  private readonly unsent: [string, string][] = [];
  private readonly beat: NodeJS.Timeout;
  private wasReady = false;
  private closed = false;

  private constructor(
    readonly gatewayId: string,
    private readonly redis: Redis,
    private readonly sub: Redis,
    private readonly log: Logger,
  ) {
    this.local = new MemoryCoordinator(gatewayId);
    redis.on('error', (err) => log.debug({ err: err.message }, 'redis error'));
    sub.on('error', () => {});
    redis.on('ready', () => this.onReady());
    // A subscriber that was cut off may have missed messages: whoever listens resyncs.
    let subscribed = false;
    sub.on('ready', () => {
      if (subscribed) for (const h of this.reconnectHandlers) h();
      subscribed = true;
    });
    redis.on('end', () => undefined);
    redis.on('close', () => {
      if (this.wasReady && !this.closed) log.warn('redis connection lost: coordination is per gateway until it is back');
    });
    sub.on('messageBuffer', (channel: Buffer, body: Buffer) => this.deliver(channel.toString().slice(PREFIX.length), body.toString()));
    this.beat = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    this.beat.unref();
  }

  /** Connects (waiting up to connectWaitMs for Redis; pgfleet starts without it and catches up). */
  static async open(url: string, gatewayId: string, log: Logger, connectWaitMs = 5000): Promise<RedisCoordinator> {
    const options = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 2000,
      connectTimeout: 2000,
      retryStrategy: (attempt: number) => Math.min(50 * attempt, 1000),
    };
    const redis = new Redis(url, { ...options, lazyConnect: true });
    // The subscriber queues its SUBSCRIBEs until connected (never timing them out: a lost
    // subscription would be lost for good), and ioredis subscribes again after a reconnect.
    const sub = new Redis(url, { ...options, commandTimeout: undefined, maxRetriesPerRequest: null, enableOfflineQueue: true, lazyConnect: true });
    const coord = new RedisCoordinator(gatewayId, redis, sub, log);
    sub.connect().catch(() => {});
    const ready = redis.connect().then(() => true, () => false);
    const timer = new Promise<boolean>((r) => setTimeout(() => r(false), connectWaitMs).unref());
    if (!(await Promise.race([ready, timer]))) log.warn({ redis: redactUrl(url) }, 'redis is not reachable yet: starting with per-gateway coordination');
    return coord;
  }

  private onReady(): void {
    const again = this.wasReady;
    this.wasReady = true;
    void this.heartbeat();
    if (again) this.log.info('redis connection back');
  }

  /** Puts this gateway's held values and shares again, and sends what waited for Redis. */
  private async heartbeat(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    try {
      const p = this.redis.pipeline();
      for (const [key, value] of this.local.heldEntries()) p.set(PREFIX + key, value, 'PX', HELD_TTL_MS);
      for (const [key, value] of this.local.shareEntries()) p.hset(PREFIX + key, this.gatewayId, shareValue(value));
      while (this.unsent.length) {
        const [channel, body] = this.unsent.shift()!;
        p.publish(PREFIX + channel, body);
      }
      await p.exec();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'redis heartbeat failed');
    }
  }

  /** Runs op on Redis; while Redis fails, fallback answers from this gateway's own view. */
  private async guarded<T>(op: () => Promise<T>, fallback: () => Promise<T>): Promise<T> {
    if (this.redis.status !== 'ready') return fallback();
    try {
      return await op();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'redis command failed; using this gateway\'s own view');
      return fallback();
    }
  }

  async increment(key: string, windowMs: number): Promise<WindowCount> {
    return this.guarded(async () => {
      const [count, ttl] = (await this.redis.eval(INCREMENT, 1, PREFIX + key, windowMs)) as [number, number];
      return { count, resetInMs: ttl };
    }, () => this.local.increment(key, windowMs));
  }

  async get(key: string): Promise<WindowCount> {
    return this.guarded(async () => {
      const [value, ttl] = await Promise.all([this.redis.get(PREFIX + key), this.redis.pttl(PREFIX + key)]);
      return value === null ? { count: 0, resetInMs: 0 } : { count: Number(value), resetInMs: Math.max(0, ttl) };
    }, () => this.local.get(key));
  }

  async hold(key: string, value: string): Promise<boolean> {
    if (!(await this.local.hold(key, value))) return false;
    const taken = await this.guarded(async () => (await this.redis.set(PREFIX + key, value, 'PX', HELD_TTL_MS, 'NX')) === null, async () => false);
    if (taken) await this.local.drop(key);
    return !taken;
  }

  async drop(key: string): Promise<void> {
    await this.local.drop(key);
    await this.guarded(async () => void (await this.redis.del(PREFIX + key)), async () => undefined);
  }

  async lookup(key: string): Promise<string | undefined> {
    const mine = await this.local.lookup(key);
    if (mine !== undefined) return mine;
    return this.guarded(async () => (await this.redis.get(PREFIX + key)) ?? undefined, async () => undefined);
  }

  async setShare(key: string, value: number): Promise<void> {
    await this.local.setShare(key, value);
    await this.guarded(async () => {
      if (value === 0) await this.redis.hdel(PREFIX + key, this.gatewayId);
      else await this.redis.hset(PREFIX + key, this.gatewayId, shareValue(value));
    }, async () => undefined);
  }

  async total(key: string): Promise<number> {
    return this.guarded(async () => {
      const fields = await this.redis.hgetall(PREFIX + key);
      const now = Date.now();
      let sum = 0;
      const stale: string[] = [];
      for (const [gateway, raw] of Object.entries(fields)) {
        if (gateway === this.gatewayId) continue; // our own share is known here for sure
        const [value, expiresAt] = raw.split(':').map(Number) as [number, number];
        if (expiresAt > now) sum += value;
        else stale.push(gateway);
      }
      if (stale.length) void this.redis.hdel(PREFIX + key, ...stale).catch(() => {});
      return sum + (await this.local.total(key));
    }, () => this.local.total(key));
  }

  async setFlag(key: string, value: string, ttlMs: number): Promise<void> {
    await this.local.setFlag(key, value, ttlMs);
    await this.guarded(async () => void (await this.redis.set(PREFIX + key, value, 'PX', ttlMs)), async () => undefined);
  }

  async getFlag(key: string): Promise<string | undefined> {
    return this.guarded(async () => (await this.redis.get(PREFIX + key)) ?? undefined, () => this.local.getFlag(key));
  }

  async clearFlag(key: string): Promise<void> {
    await this.local.clearFlag(key);
    await this.guarded(async () => void (await this.redis.del(PREFIX + key)), async () => undefined);
  }

  async tryLock(name: string, leaseMs: number): Promise<HeldLock | undefined> {
    return this.guarded(async () => {
      const key = `${PREFIX}lock:${name}`;
      const token = (await this.redis.eval(LOCK, 2, key, `${PREFIX}fence:${name}`, leaseMs)) as string | null;
      if (token === null) return undefined;
      return {
        token: Number(token),
        stillHeld: async () => (await this.redis.get(key).catch(() => null)) === token,
        release: async () => void (await this.redis.eval(RELEASE, 1, key, token).catch(() => 0)),
      };
    }, () => this.local.tryLock(name, leaseMs));
  }

  async publish(channel: string, message: Message): Promise<void> {
    const body = JSON.stringify(message);
    await this.guarded(async () => void (await this.redis.publish(PREFIX + channel, body)), async () => {
      // Redis is away: this gateway acts now, the others hear it when Redis is back.
      this.unsent.push([channel, body]);
      this.deliver(channel, body);
    });
  }

  subscribe(channel: string, handler: (message: Message) => void): void {
    const list = this.handlers.get(channel);
    if (list) list.push(handler);
    else {
      this.handlers.set(channel, [handler]);
      this.sub.subscribe(PREFIX + channel).catch((err) => this.log.warn({ err: err.message, channel }, 'redis subscribe failed'));
    }
  }

  private deliver(channel: string, body: string): void {
    let message: Message;
    try {
      message = JSON.parse(body) as Message;
    } catch {
      return;
    }
    for (const h of this.handlers.get(channel) ?? []) {
      try {
        h(message);
      } catch (err) {
        this.log.error({ err, channel }, 'coordination message handler failed');
      }
    }
  }

  get listening(): boolean {
    return this.sub.status === 'ready';
  }

  onReconnect(handler: () => void): void {
    this.reconnectHandlers.push(handler);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.beat);
    // Our held values and shares go now rather than when their lifetime ends.
    if (this.redis.status === 'ready') {
      const p = this.redis.pipeline();
      for (const [key] of this.local.heldEntries()) p.del(PREFIX + key);
      for (const [key] of this.local.shareEntries()) p.hdel(PREFIX + key, this.gatewayId);
      await p.exec().catch(() => {});
    }
    await this.local.close();
    this.redis.disconnect();
    this.sub.disconnect();
  }
}

const shareValue = (value: number) => `${value}:${Date.now() + HELD_TTL_MS}`;

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'REDIS_URL';
  }
}
