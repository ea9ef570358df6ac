import type { Catalog } from '../../catalog/catalog.ts';
import type { Config } from '../../config.ts';
import type { ComputeCgroups } from '../../limits/cgroups.ts';
import type { Logger } from '../../log.ts';
import type { PgInstalls } from '../../pg/install.ts';
import { startLauncher } from '../../pg/launcher.ts';
import type { OsUser } from '../../pg/os-user.ts';
import { ensureSecretKey } from '../../secret-box.ts';
import { openStore } from '../../storage/open-store.ts';
import { SealedStore } from '../../storage/sealed-store.ts';
import { storeIdentity } from '../../storage/storage-config.ts';
import type { ProviderEvents } from '../provider.ts';
import { BaseBackups } from './base-backups.ts';
import { Histories } from './histories.ts';
import { LocalLayout } from './layout.ts';
import { LocalProvider } from './local-provider.ts';
import type { NodeIdentity } from './local-storage.ts';
import { Templates } from './templates.ts';

export interface LocalParts {
  catalog: Catalog;
  user: OsUser;
  installs: PgInstalls;
  runDir: string;
  cgroups: ComputeCgroups;
  node: NodeIdentity;
  log: Logger;
}

/** The local provider over its store: the store the configuration names, sealed with the gateway's secret key. */
export async function openLocalProvider(config: Config, parts: LocalParts, events: ProviderEvents): Promise<LocalProvider> {
  const { catalog, user, installs, runDir, cgroups, node, log } = parts;
  // Started now, so that the first wake does not wait for it (an embedded catalog's start began it already).
  startLauncher();
  const store = new SealedStore(await openStore(config.storage, log), ensureSecretKey(config.dataDir, config.secretKey));
  const histories = new Histories(catalog);
  const templates = new Templates({
    layout: new LocalLayout(config.dataDir, runDir), user, catalog, store, storeId: storeIdentity(config.storage, node.id), startTimeoutMs: config.wakeTimeoutMs, log,
  });
  return new LocalProvider({
    dataDir: config.dataDir, runDir, installs, user, compute: config.compute, cgroups, startTimeoutMs: config.wakeTimeoutMs, log,
    storage: {
      catalog, store, histories, templates, backups: new BaseBackups(store, histories), node, settings: config.storage,
      backupIntervalMs: config.history.baseBackupIntervalMs,
    },
  }, events);
}
