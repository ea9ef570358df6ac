/** What a local provider keeps off the node (the store, its histories and backups) and who this node is. */
import type { Catalog } from '../../catalog/catalog.ts';
import type { SealedStore } from '../../storage/sealed-store.ts';
import type { StorageSettings } from '../../storage/storage-config.ts';
import type { BaseBackups } from './base-backups.ts';
import type { Histories } from './histories.ts';
import type { Templates } from './templates.ts';

/** This node as the fleet knows it: whether it may still write to the store. */
export interface NodeIdentity {
  id: string;
  generation(): number;
  /** False once the node was fenced (declared dead) or its lease ran out. */
  canWrite(): boolean;
}

/** Where local databases' data and history live, and who this node is. */
export interface LocalStorage {
  catalog: Catalog;
  store: SealedStore;
  histories: Histories;
  templates: Templates;
  backups: BaseBackups;
  node: NodeIdentity;
  settings: StorageSettings;
  /** A branch gets a new base backup once its newest is older than this. */
  backupIntervalMs: number;
}
