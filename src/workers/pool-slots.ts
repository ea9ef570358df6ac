/**
 * The transaction pooler's `pool_size` across proxy workers: a pool of (branch, role, database)
 * opens a backend only with a slot, and the primary gives at most pool_size slots per pool to all
 * workers together. A worker refused a slot waits as for a busy pool; the workers that hold
 * slots are asked to close an idle backend, and a slot given back is offered to those waiting.
 */
import type { IpcPeer } from './ipc.ts';

/** What a worker's pooler asks (undefined in one process: its own count is the node's). */
export interface PoolSlots {
  /** A slot for one more backend of the pool, when fewer than size are open node-wide. */
  take(key: string, size: number): Promise<boolean>;
  give(key: string): void;
  /** A slot of key came free: waiting clients may try again. */
  onFreed(handler: (key: string) => void): void;
  /** Another worker waits for a slot of key: close an idle backend of it, if any. */
  onWanted(handler: (key: string) => void): void;
}

/** The worker's side. */
export class RemotePoolSlots implements PoolSlots {
  constructor(private readonly peer: IpcPeer) {}

  take(key: string, size: number): Promise<boolean> {
    return this.peer.call('pool.take', { key, size });
  }

  give(key: string): void {
    this.peer.notify('pool.give', { key });
  }

  onFreed(handler: (key: string) => void): void {
    this.peer.onNote('pool.freed', ({ key }) => handler(key));
  }

  onWanted(handler: (key: string) => void): void {
    this.peer.onNote('pool.wanted', ({ key }) => handler(key));
  }
}

/** The primary's side: slots held per pool and per worker. */
export class PoolSlotsHub {
  /** key → worker → slots held */
  private readonly held = new Map<string, Map<IpcPeer, number>>();
  /** key → workers refused a slot since one was last freed */
  private readonly wanting = new Map<string, Set<IpcPeer>>();

  attach(peer: IpcPeer): void {
    peer.handle('pool.take', ({ key, size }: { key: string; size: number }) => this.take(peer, key, size));
    peer.onNote('pool.give', ({ key }: { key: string }) => this.give(peer, key));
  }

  private take(peer: IpcPeer, key: string, size: number): boolean {
    let byWorker = this.held.get(key);
    if (this.open(key) >= size) {
      let wanting = this.wanting.get(key);
      if (!wanting) this.wanting.set(key, wanting = new Set());
      wanting.add(peer);
      for (const holder of byWorker?.keys() ?? []) if (holder !== peer) holder.notify('pool.wanted', { key });
      return false;
    }
    if (!byWorker) this.held.set(key, byWorker = new Map());
    byWorker.set(peer, (byWorker.get(peer) ?? 0) + 1);
    return true;
  }

  private give(peer: IpcPeer, key: string): void {
    const byWorker = this.held.get(key);
    const n = byWorker?.get(peer) ?? 0;
    if (n === 0) return;
    if (n === 1) byWorker!.delete(peer);
    else byWorker!.set(peer, n - 1);
    if (byWorker!.size === 0) this.held.delete(key);
    this.freed(key);
  }

  private freed(key: string): void {
    const wanting = this.wanting.get(key);
    if (!wanting) return;
    this.wanting.delete(key);
    for (const peer of wanting) peer.notify('pool.freed', { key });
  }

  /** A worker died: its backends closed with it. */
  forget(peer: IpcPeer): void {
    for (const [key, byWorker] of this.held) {
      if (!byWorker.delete(peer)) continue;
      if (byWorker.size === 0) this.held.delete(key);
      this.freed(key);
    }
    for (const wanting of this.wanting.values()) wanting.delete(peer);
  }

  /** Slots held now for a pool, by every worker together. */
  open(key: string): number {
    let open = 0;
    for (const n of this.held.get(key)?.values() ?? []) open += n;
    return open;
  }
}
