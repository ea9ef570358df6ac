import { type CryptoKey, type JWK, importJWK } from 'jose';
import type { Catalog } from '../catalog/catalog.ts';
import { SIGNING_ALG } from './signing-keys.ts';

/** Imported keys kept at most (a kid names one key forever: it is the key's thumbprint). */
const MAX_CACHED = 1000;

/**
 * The public signing keys of the fleet's other nodes. Each node signs with its own key (kept in
 * its data dir) and records its public JWK Set in the catalog (`nodes.jwks`) with its heartbeat
 * and at once after a rotation, so a token issued by any gateway verifies on every gateway.
 */
export class FleetKeys {
  private readonly imported = new Map<string, CryptoKey>();

  constructor(
    private readonly catalog: Catalog,
    private readonly selfId: string,
  ) {}

  /** The other nodes' public keys, for the fleet's JWK Set. */
  async others(): Promise<JWK[]> {
    const { rows } = await this.catalog.query<{ key: JWK }>(
      `SELECT k AS key FROM nodes n, jsonb_array_elements(n.jwks->'keys') k WHERE n.id <> $1 ORDER BY n.id`, [this.selfId]);
    return rows.map((r) => r.key);
  }

  /** Another node's public key with this kid, if one records it. */
  async publicKey(kid: string | undefined): Promise<CryptoKey | undefined> {
    if (!kid) return undefined;
    const known = this.imported.get(kid);
    if (known) return known;
    const { rows } = await this.catalog.query<{ key: JWK }>(
      `SELECT k AS key FROM nodes n, jsonb_array_elements(n.jwks->'keys') k WHERE n.id <> $1 AND k->>'kid' = $2 LIMIT 1`, [this.selfId, kid]);
    if (!rows[0]) return undefined;
    const key = (await importJWK(rows[0].key, SIGNING_ALG)) as CryptoKey;
    if (this.imported.size >= MAX_CACHED) this.imported.delete(this.imported.keys().next().value!);
    this.imported.set(kid, key);
    return key;
  }
}
