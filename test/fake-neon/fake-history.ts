import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { copyTree, stripRunFiles } from '../../src/providers/local/files.ts';
import { archiveCommand, linkArchive } from './fake-archive.ts';
import { recoverToTarget } from '../../src/providers/local/recovery.ts';
import type { PointInTime } from '../../src/providers/point-in-time.ts';
import { parseLsn } from '../../src/providers/point-in-time.ts';
import type { PgInstall } from '../../src/pg/install.ts';
import { type OsUser, makeOwnedDir } from '../../src/pg/os-user.ts';
import type { HistoryEnd } from '../../src/providers/local/compute-admin.ts';

/**
 * The history of a fake Neon branch, kept with Postgres's own pieces so that branches at a past
 * moment and restores hold exactly the data of that moment: each branch directory has pgdata/,
 * archive/ (every WAL segment its compute wrote, archived as it finishes, and the segments of its
 * ancestors, hard-linked) and base/ (the consistent copy its history starts from). Data at a
 * moment = base/ + archive/ replayed to it. Neon does this with its own storage; only the result
 * is the same.
 */

export const pgdataOf = (dir: string) => path.join(dir, 'pgdata');
const archiveOf = (dir: string) => path.join(dir, 'archive');
const baseOf = (dir: string) => path.join(dir, 'base');

/** The settings that archive a branch's WAL into its own archive. */
export const archiveSettings = (dir: string) => ({ archive_mode: 'on', archive_command: archiveCommand(archiveOf(dir)), wal_level: 'replica' });

/** A new root branch: its data is a copy of the template, which is also where its history starts. */
export async function startHistory(dir: string, templatePgdata: string, user: OsUser): Promise<void> {
  makeOwnedDir(dir, user);
  makeOwnedDir(archiveOf(dir), user);
  await copyTree(templatePgdata, pgdataOf(dir));
  await copyTree(templatePgdata, baseOf(dir));
}

export interface HistorySource {
  dir: string;
  /** Where its history ends now (every commit until then archived); undefined = it never ran. */
  end: HistoryEnd | undefined;
  /** Its compute runs: its data directory is not a consistent copy, only base + archive are. */
  running: boolean;
}

const atOrAfter = (at: PointInTime, end: HistoryEnd) => ('time' in at ? at.time >= end.time : parseLsn(at.lsn) >= parseLsn(end.lsn));

/**
 * Fills `dir` with the data of `source` now (at undefined) or at `at`: a copy of its stopped
 * data directory when nothing happened after the moment, else its base replayed to the moment,
 * or to the end of its archive (promoted on a new timeline). The new branch's archive starts with links to its source's.
 */
export async function buildFrom(install: PgInstall, user: OsUser, source: HistorySource, dir: string, at: PointInTime | undefined): Promise<void> {
  makeOwnedDir(dir, user);
  makeOwnedDir(archiveOf(dir), user);
  linkArchive(archiveOf(source.dir), archiveOf(dir));
  await copyTree(baseOf(source.dir), baseOf(dir));
  if (!source.running && (!at || !source.end || atOrAfter(at, source.end))) {
    await copyTree(pgdataOf(source.dir), pgdataOf(dir));
    stripRunFiles(pgdataOf(dir));
    return;
  }
  await copyTree(baseOf(source.dir), pgdataOf(dir));
  await recoverToTarget({
    install, user, dir, walDir: archiveOf(dir), target: at && source.end && atOrAfter(at, source.end) ? undefined : at, settings: { ...archiveSettings(dir), shared_buffers: '16MB', max_connections: 10, jit: 'off' },
    socketDir: fs.mkdtempSync(path.join(os.tmpdir(), 'fnr-')),
  });
}
