import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { type BranchExpiry, parseExpiresAt } from '../../src/branch-expiry.ts';
import type { Catalog } from '../../src/catalog/catalog.ts';
import type { ComputeManager } from '../../src/computes.ts';
import { POOLER_SUFFIX, type PublicAddress, connectionInfo } from '../../src/connection-uri.ts';
import type { Databases } from '../../src/databases.ts';
import type { BranchRecord, Branches } from '../../src/branches.ts';
import { BadRequestError } from '../../src/errors.ts';
import type { Events, NewEvent } from '../../src/events/events.ts';
import { parsePointInTime } from '../../src/providers/point-in-time.ts';
import { databaseScope, partnerOf } from '../auth.ts';
import { caCertificateUrl } from '../ca-certificate.ts';
import {
  Branch, BranchCreate, BranchList, BranchParams, type BranchView, BranchUpdate, IdParams, RestoreRequest, RestoreResult, errorResponses,
} from '../schemas.ts';

export interface BranchRoutesOptions {
  branches: Branches;
  /** Ephemeral branches: expires_at. */
  expiry: BranchExpiry;
  /** Where branch.* and restore.* events are recorded, right after each change. */
  events: Events;
  catalog: Catalog;
  databases: Databases;
  computes: ComputeManager;
  publicAddress: PublicAddress;
}

const security = [{ apiKey: [] }];
const tags = ['branches'];

/** A partner's routes for the branches of its users' databases, and point-in-time restore. */
export const branchRoutes: FastifyPluginAsyncTypebox<BranchRoutesOptions> = async (app, opts) => {
  const { branches, databases, computes, publicAddress, expiry, events, catalog } = opts;
  const record = (partnerId: string, databaseId: string, type: NewEvent['type'], data: Record<string, unknown>) =>
    events.recordAfter({ type, partnerId, databaseId, data });
  const branchData = (b: BranchRecord) => ({ branch_id: b.id, name: b.name, parent: b.parent });

  /** `req`: the asking client's request (where it fetches the CA); `expires`: the expiries of the branches shown. */
  const view = async (req: FastifyRequest, partnerId: string, b: BranchRecord, expires?: Map<string, Date>): Promise<BranchView> => {
    const expiresAt = (expires ?? await expiry.of([b.id])).get(b.id);
    const db = await databases.get(partnerId, b.databaseId);
    const earliest = await branches.earliestRestorable(db, b);
    const { host, port: _port, ...uris } = connectionInfo(publicAddress, b.endpointId, b.ownerRole, undefined, b.databaseName);
    return {
      id: b.id,
      database_id: b.databaseId,
      name: b.name,
      parent: b.parent,
      parent_time: b.parentTime ? b.parentTime.toISOString() : null,
      parent_lsn: b.parentLsn,
      endpoint_id: b.endpointId,
      host,
      port: publicAddress.port,
      database: b.databaseName,
      role: b.ownerRole,
      pooled_host: `${b.endpointId}${POOLER_SUFFIX}.${publicAddress.domain}`,
      ca_certificate_url: caCertificateUrl(req, publicAddress),
      ...uris,
      state: computes.info(b.id).state,
      earliest_restorable_at: earliest ? earliest.toISOString() : null,
      expires_at: expiresAt ? expiresAt.toISOString() : null,
      created_at: b.createdAt.toISOString(),
    };
  };

  app.post('/v1/databases/:id/branches', {
    schema: {
      summary: 'Create a branch of a branch (default main), as it is now or as it was at `at`; it gets its own endpoint and compute',
      tags, security, params: IdParams, body: BranchCreate, response: { 201: Branch, ...errorResponses },
    },
  }, async (req, reply) => {
    const partnerId = partnerOf(req);
    const { expires_at: expires, ...input } = req.body;
    const expiresAt = expires === undefined ? undefined : parseExpiresAt(expires);
    const branch = await branches.create(partnerId, req.params.id, input);
    if (expiresAt) await expiry.set(branch.id, expiresAt);
    await record(partnerId, branch.databaseId, 'branch.created', { ...branchData(branch), expires_at: expiresAt?.toISOString() ?? null });
    return reply.code(201).send(await view(req, partnerId, branch));
  });

  app.get('/v1/databases/:id/branches', {
    schema: { summary: "List a database's branches", tags, security, params: IdParams, response: { 200: BranchList, ...errorResponses } },
  }, async (req) => {
    const partnerId = await databaseScope(req, req.params.id, catalog);
    const list = await branches.list(partnerId, req.params.id);
    const expires = await expiry.of(list.map((b) => b.id));
    return { branches: await Promise.all(list.map((b) => view(req, partnerId, b, expires))) };
  });

  app.get('/v1/databases/:id/branches/:branch', {
    schema: { summary: 'Get a branch', tags, security, params: BranchParams, response: { 200: Branch, ...errorResponses } },
  }, async (req) => {
    const partnerId = await databaseScope(req, req.params.id, catalog);
    return view(req, partnerId, await branches.get(partnerId, req.params.id, req.params.branch));
  });

  app.patch('/v1/databases/:id/branches/:branch', {
    schema: { summary: 'Rename a branch, or set or clear its expires_at', tags, security, params: BranchParams, body: BranchUpdate, response: { 200: Branch, ...errorResponses } },
  }, async (req) => {
    const partnerId = partnerOf(req);
    const { name, expires_at: expires } = req.body;
    if (name === undefined && expires === undefined) throw new BadRequestError('body: give name, expires_at, or both');
    const expiresAt = expires === undefined || expires === null ? expires : parseExpiresAt(expires);
    let branch = await branches.get(partnerId, req.params.id, req.params.branch);
    if (expiresAt !== undefined && branch.parent === null) throw new BadRequestError(`expires_at: branch "${branch.name}" is the database's root branch, which goes only with its database`);
    if (name !== undefined) branch = await branches.rename(partnerId, req.params.id, req.params.branch, name);
    if (expiresAt !== undefined) await expiry.set(branch.id, expiresAt);
    return view(req, partnerId, branch);
  });

  app.delete('/v1/databases/:id/branches/:branch', {
    schema: {
      summary: 'Delete a branch: its compute stops and its data is removed (the root branch goes only with its database; children stay)',
      tags, security, params: BranchParams, response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    const partnerId = partnerOf(req);
    const branch = await branches.get(partnerId, req.params.id, req.params.branch);
    await branches.delete(partnerId, req.params.id, req.params.branch);
    await record(partnerId, branch.databaseId, 'branch.deleted', branchData(branch));
    return reply.code(204).send(null);
  });

  app.post('/v1/databases/:id/branches/:branch/reset', {
    schema: {
      summary: "Make the branch a fresh copy of its parent as it is now; the branch's sessions end first",
      tags, security, params: BranchParams, response: { 200: Branch, ...errorResponses },
    },
  }, async (req) => {
    const partnerId = partnerOf(req);
    const branch = await branches.reset(partnerId, req.params.id, req.params.branch);
    await record(partnerId, branch.databaseId, 'branch.reset', branchData(branch));
    return view(req, partnerId, branch);
  });

  app.post('/v1/databases/:id/restore', {
    schema: {
      summary: 'Rewind a branch (default main) to `at`, keeping its endpoint; its state just before is kept as branch <branch>_before_<timestamp>',
      tags, security, params: IdParams, body: RestoreRequest, response: { 200: RestoreResult, ...errorResponses },
    },
  }, async (req) => {
    const partnerId = partnerOf(req);
    const target = await branches.get(partnerId, req.params.id, req.body.branch);
    parsePointInTime(req.body.at); // a malformed time is a 400 before anything starts
    const asked = { branch_id: target.id, name: target.name, at: req.body.at };
    await record(partnerId, target.databaseId, 'restore.started', asked);
    try {
      const { branch, before } = await branches.restore(partnerId, req.params.id, req.body);
      await record(partnerId, branch.databaseId, 'restore.finished', { ...asked, ok: true, before: before.name });
      return { branch: await view(req, partnerId, branch), before: await view(req, partnerId, before) };
    } catch (err) {
      await record(partnerId, target.databaseId, 'restore.finished', { ...asked, ok: false, error: (err as Error).message });
      throw err;
    }
  });
};
