import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Coordinator } from './coordinator.ts';
import { MemoryCoordinator } from './memory-coordinator.ts';
import { RedisCoordinator } from './redis-coordinator.ts';

/** This node's id: PGFLEET_NODE_ID, else one made at first start and kept in `<data dir>/node-id`. */
export function nodeIdOf(config: Config): string {
  if (config.nodeId) return config.nodeId;
  const file = path.join(config.dataDir, 'node-id');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const id = `node-${crypto.randomBytes(6).toString('hex')}`;
    fs.writeFileSync(file, `${id}\n`, { mode: 0o600 });
    return id;
  }
}

/** Redis when REDIS_URL is set, else in-process. */
export function openCoordinator(config: Config, nodeId: string, log: Logger): Promise<Coordinator> | Coordinator {
  return config.redisUrl ? RedisCoordinator.open(config.redisUrl, nodeId, log.child({ component: 'coord' })) : new MemoryCoordinator(nodeId);
}
