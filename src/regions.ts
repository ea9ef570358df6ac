import { BadRequestError } from './errors.ts';
import type { Provider } from './providers/provider.ts';

export interface Region {
  id: string;
  provider: Provider;
  /** The Postgres major of a new database that asks for none; one the provider runs. */
  pgVersion: number;
}

/** The major of a new database in the region: the one asked for, when the region runs it, else a 400 naming those it runs. */
export function pgVersionFor(region: Region, requested: number | undefined): number {
  if (requested === undefined) return region.pgVersion;
  if (!region.provider.pgVersions.includes(requested)) {
    throw new BadRequestError(`pg_version: region "${region.id}" runs Postgres ${region.provider.pgVersions.join(', ')}; not ${requested}`);
  }
  return requested;
}

/** Which provider serves each region. The first region is the default. */
export class Regions {
  private readonly byId = new Map<string, Region>();

  constructor(regions: Region[]) {
    if (regions.length === 0) throw new Error('at least one region is needed');
    for (const r of regions) this.byId.set(r.id, r);
  }

  get default(): Region {
    return this.byId.values().next().value as Region;
  }

  get ids(): string[] {
    return [...this.byId.keys()];
  }

  /** The region, or a 400 naming the known ones. */
  get(id: string | undefined): Region {
    if (id === undefined) return this.default;
    const r = this.find(id);
    if (!r) throw new BadRequestError(`region: unknown region "${id}"; known regions: ${this.ids.join(', ')}`);
    return r;
  }

  /** The region, or undefined when it is not configured (any more). */
  find(id: string): Region | undefined {
    return this.byId.get(id);
  }

  providers(): Provider[] {
    return [...new Set([...this.byId.values()].map((r) => r.provider))];
  }
}
