import { BadRequestError } from './errors.ts';
import type { Provider } from './providers/provider.ts';

export interface Region {
  id: string;
  provider: Provider;
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
    const r = this.byId.get(id);
    if (!r) throw new BadRequestError(`region: unknown region "${id}"; known regions: ${this.ids.join(', ')}`);
    return r;
  }

  providers(): Provider[] {
    return [...new Set([...this.byId.values()].map((r) => r.provider))];
  }
}
