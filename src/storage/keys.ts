/**
 * Where things are in the store. Everything of one database sits under `db/<database>/`, so
 * deleting it is one prefix; templates (initdb output, no tenant data) are the fleet's.
 */
export const storeKeys = {
  database: (databaseId: string) => `db/${databaseId}/`,
  packs: (databaseId: string) => `db/${databaseId}/packs/`,
  backup: (databaseId: string, historyId: string, backupId: string) => `db/${databaseId}/backups/${historyId}/${backupId}`,
  backups: (databaseId: string) => `db/${databaseId}/backups/`,
  wal: (databaseId: string, historyId: string) => `db/${databaseId}/wal/${historyId}/`,
  template: (version: string) => `templates/pg${version}/manifest`,
  templatePacks: (version: string) => `templates/pg${version}/packs/`,
};
