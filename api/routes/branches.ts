import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { ComputeManager } from '../../src/computes.ts';
import { POOLER_SUFFIX, type PublicAddress, connectionInfo } from '../../src/connection-uri.ts';
import type { Databases } from '../../src/databases.ts';
import type { BranchRecord, Branches } from '../../src/branches.ts';
import { partnerOf } from '../auth.ts';
import { caCertificateUrl } from '../ca-certificate.ts';
import {
  Branch, BranchCreate, BranchList, BranchParams, type BranchView, BranchUpdate, IdParams, RestoreRequest, RestoreResult, errorResponses,
} from '../schemas.ts';

export interface BranchRoutesOptions {
  branches: Branches;
  databases: Databases;
  computes: ComputeManager;
  publicAddress: PublicAddress;
}

const security = [{ apiKey: [] }];
const tags = ['branches'];

/** A partner's routes for the branches of its users' databases, and point-in-time restore. */
export const branchRoutes: FastifyPluginAsyncTypebox<BranchRoutesOptions> = async (app, opts) => {
  const { branches, databases, computes, publicAddress } = opts;

  /** `req`: the asking client's request (where it fetches the CA). */
  const view = async (req: FastifyRequest, partnerId: string, b: BranchRecord): Promise<BranchView> => {
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
    const branch = await branches.create(partnerId, req.params.id, req.body);
    return reply.code(201).send(await view(req, partnerId, branch));
  });

  app.get('/v1/databases/:id/branches', {
    schema: { summary: "List a database's branches", tags, security, params: IdParams, response: { 200: BranchList, ...errorResponses } },
  }, async (req) => {
    const partnerId = partnerOf(req);
    const list = await branches.list(partnerId, req.params.id);
    return { branches: await Promise.all(list.map((b) => view(req, partnerId, b))) };
  });

  app.get('/v1/databases/:id/branches/:branch', {
    schema: { summary: 'Get a branch', tags, security, params: BranchParams, response: { 200: Branch, ...errorResponses } },
  }, async (req) => {
    const partnerId = partnerOf(req);
    return view(req, partnerId, await branches.get(partnerId, req.params.id, req.params.branch));
  });

  app.patch('/v1/databases/:id/branches/:branch', {
    schema: { summary: 'Rename a branch', tags, security, params: BranchParams, body: BranchUpdate, response: { 200: Branch, ...errorResponses } },
  }, async (req) => {
    const partnerId = partnerOf(req);
    return view(req, partnerId, await branches.rename(partnerId, req.params.id, req.params.branch, req.body.name));
  });

  app.delete('/v1/databases/:id/branches/:branch', {
    schema: {
      summary: 'Delete a branch: its compute stops and its data is removed (the root branch goes only with its database; children stay)',
      tags, security, params: BranchParams, response: { 204: Type.Null(), ...errorResponses },
    },
  }, async (req, reply) => {
    await branches.delete(partnerOf(req), req.params.id, req.params.branch);
    return reply.code(204).send(null);
  });

  app.post('/v1/databases/:id/branches/:branch/reset', {
    schema: {
      summary: "Make the branch a fresh copy of its parent as it is now; the branch's sessions end first",
      tags, security, params: BranchParams, response: { 200: Branch, ...errorResponses },
    },
  }, async (req) => {
    const partnerId = partnerOf(req);
    return view(req, partnerId, await branches.reset(partnerId, req.params.id, req.params.branch));
  });

  app.post('/v1/databases/:id/restore', {
    schema: {
      summary: 'Rewind a branch (default main) to `at`, keeping its endpoint; its state just before is kept as branch <branch>_before_<timestamp>',
      tags, security, params: IdParams, body: RestoreRequest, response: { 200: RestoreResult, ...errorResponses },
    },
  }, async (req) => {
    const partnerId = partnerOf(req);
    const { branch, before } = await branches.restore(partnerId, req.params.id, req.body);
    return { branch: await view(req, partnerId, branch), before: await view(req, partnerId, before) };
  });
};
