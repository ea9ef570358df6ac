import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog.ts';
import type { PgInstall } from '../../pg/install.ts';
import type { OsUser } from '../../pg/os-user.ts';
import { PostgresServer, SOCKET_PORT, initCluster } from '../../pg/server.ts';
import { storeKeys } from '../../storage/keys.ts';
import type { SealedStore } from '../../storage/sealed-store.ts';
import { type Manifest, type Seed, readManifest, restoreTree, snapshotTree } from '../../storage/snapshots.ts';
import { formatLsn, parseLsn } from '../point-in-time.ts';
import { asAdmin, checkpointPosition, checkpointTimeline, systemIdentifier } from './compute-admin.ts';
import { chownTree } from '../../pg/os-user.ts';
import type { LocalLayout } from './layout.ts';

/** The fleet's template of one Postgres version, as the catalog records it. */
export interface TemplateRecord {
  version: string;
  manifest: string;
  tli: number;
  checkpoint: bigint;
  systemId: string;
}

export interface TemplatesOptions {
  layout: LocalLayout;
  /** The OS user of the template clusters. */
  user: OsUser;
  catalog: Catalog;
  store: SealedStore;
  /** Which store it is (storeIdentity): templates are recorded per store. */
  storeId: string;
  startTimeoutMs: number;
  log: Logger;
}

/**
 * The compute template of each Postgres version: initdb once for the whole fleet, kept in the
 * store and recorded in the catalog; every node holds a local copy (made from the store when
 * another node made it). One template everywhere means one system identifier: WAL a database
 * wrote on one node replays on any other.
 */
export class Templates {
  private readonly ready = new Map<string, Promise<TemplateRecord>>();

  constructor(private readonly opts: TemplatesOptions) {}

  pgdataOf(version: string): string {
    return path.join(this.opts.layout.templateDir(version), 'pgdata');
  }

  /**
   * The local copy of a version's template, when this node has it; with `manifest` (a template base
   * backup's), only when it is that very template (the manifest's key names its system identifier).
   */
  local(version: string, manifest?: string): string | undefined {
    const pgdata = this.pgdataOf(version);
    if (!fs.existsSync(path.join(path.dirname(pgdata), 'ready'))) return undefined;
    if (manifest !== undefined && !manifest.endsWith(`-${systemIdentifier(pgdata)}`)) return undefined;
    return pgdata;
  }

  private readonly manifests = new Map<string, Manifest>();

  /** What a restore of a base backup takes from this node's templates (RecoveryContext). */
  readonly sources = {
    localTemplate: (backup: { id: string; manifest: string }) => this.localFor(backup),
    templateSeed: (version: string) => this.seed(version),
  };

  /**
   * This node's copy of a version's template with its manifest, to restore a backup on top of:
   * the files a database never changed are the template's.
   */
  async seed(version: string): Promise<Seed | undefined> {
    const dir = this.local(version);
    if (!dir) return undefined;
    const key = `${storeKeys.template(version)}-${systemIdentifier(dir)}`;
    let manifest = this.manifests.get(key);
    if (!manifest) {
      manifest = await readManifest(this.opts.store, 'fleet', key).catch(() => undefined);
      if (!manifest) return undefined;
      this.manifests.set(key, manifest);
    }
    return { dir, manifest };
  }

  /** This node's copy of the template a template base backup names (`template-<version>`), when it has that very one. */
  localFor(backup: { id: string; manifest: string }): string | undefined {
    return this.local(backup.id.replace(/^template-/, ''), backup.manifest);
  }

  /** The template of the install's version: recorded, stored and here. */
  ensure(install: PgInstall): Promise<TemplateRecord> {
    let template = this.ready.get(install.version);
    if (!template) {
      template = this.make(install).catch((err) => {
        this.ready.delete(install.version);
        throw err;
      });
      this.ready.set(install.version, template);
    }
    return template;
  }

  private async record(version: string): Promise<TemplateRecord | undefined> {
    const { rows } = await this.opts.catalog.query(
      'SELECT version, manifest, timeline, checkpoint_lsn::text, system_id FROM templates WHERE store = $1 AND version = $2', [this.opts.storeId, version]);
    const r = rows[0];
    return r && { version: r.version, manifest: r.manifest, tli: r.timeline, checkpoint: parseLsn(r.checkpoint_lsn), systemId: r.system_id };
  }

  private async make(install: PgInstall): Promise<TemplateRecord> {
    const pgdata = this.pgdataOf(install.version);
    const dir = path.dirname(pgdata);
    const readyFile = path.join(dir, 'ready');
    let recorded = await this.record(install.version);
    const local = fs.existsSync(readyFile) ? systemIdentifier(pgdata) : undefined;
    if (recorded && local === recorded.systemId) return recorded;
    if (!recorded) {
      const started = Date.now();
      if (local === undefined) {
        this.opts.log.info({ dir }, 'initializing the compute template');
        fs.rmSync(dir, { recursive: true, force: true });
        await initCluster(install, this.opts.user, pgdata);
        await this.compact(install, pgdata);
        fs.writeFileSync(readyFile, `${install.version}\n`);
      }
      const made = Date.now();
      recorded = await this.publish(install.version, pgdata);
      this.opts.log.info({ version: install.version, made_ms: made - started, stored_ms: Date.now() - made }, 'compute template made and stored');
      if (recorded.systemId === systemIdentifier(pgdata)) return recorded;
    }
    // Another node's template is the fleet's: this node takes a copy of it.
    this.opts.log.info({ dir, version: install.version }, 'fetching the fleet\'s compute template from the store');
    fs.rmSync(dir, { recursive: true, force: true });
    await restoreTree(this.opts.store, await readManifest(this.opts.store, 'fleet', recorded.manifest), pgdata);
    chownTree(dir, this.opts.user);
    fs.writeFileSync(readyFile, `${install.version}\n`);
    return recorded;
  }

  /** Stores this node's template and records it, unless another node recorded one first (that one wins). */
  private async publish(version: string, pgdata: string): Promise<TemplateRecord> {
    const manifest = storeKeys.template(version);
    const key = `${manifest}-${systemIdentifier(pgdata)}`;
    await snapshotTree(this.opts.store, { dir: pgdata, scope: 'fleet', manifestKey: key, packPrefix: storeKeys.templatePacks(version), known: new Map() });
    await this.opts.catalog.query(
      `INSERT INTO templates (store, version, manifest, timeline, checkpoint_lsn, system_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (store, version) DO NOTHING`,
      [this.opts.storeId, version, key, checkpointTimeline(pgdata), formatLsn(BigInt(checkpointPosition(pgdata))), systemIdentifier(pgdata)]);
    return (await this.record(version))!;
  }

  /**
   * Rewrites the catalogs of the template's databases compactly (initdb leaves them ~15% larger
   * than their rows need) and drops the WAL that took: every database and branch is a copy.
   */
  private async compact(install: PgInstall, pgdata: string): Promise<void> {
    const socketDir = this.opts.layout.socketDir(`template${install.major}`);
    const server = new PostgresServer({
      install, user: this.opts.user, pgdata, socketDir,
      logFile: path.join(path.dirname(pgdata), 'postgres.log'),
      settings: { wal_recycle: 'off', min_wal_size: '2MB', autovacuum: 'off' },
      startTimeoutMs: this.opts.startTimeoutMs,
    });
    await server.start();
    try {
      await asAdmin(socketDir, SOCKET_PORT, (c) => c.query('ALTER DATABASE template0 ALLOW_CONNECTIONS true'));
      for (const db of ['template0', 'template1', 'postgres']) await asAdmin(socketDir, SOCKET_PORT, (c) => c.query('VACUUM (FULL, FREEZE)'), db);
      await asAdmin(socketDir, SOCKET_PORT, (c) => c.query('ALTER DATABASE template0 ALLOW_CONNECTIONS false; CHECKPOINT; CHECKPOINT'));
    } finally {
      await server.stop('fast');
      fs.rmSync(socketDir, { recursive: true, force: true });
    }
  }
}
