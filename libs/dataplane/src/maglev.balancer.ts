import type { Balancer, LbEndpoint } from './balancer';
import { allowedEndpoints, byId, pickable, randomPick } from './balancer';
import { murmur32 } from './hash';
import type { HashKeyReader, RequestView } from './request-view';

/**
 * Maglev consistent hashing (Eisenbud et al., NSDI '16) with Envoy's weighting: a lookup table
 * of `tableSize` (prime) slots filled from each endpoint's offset/skip permutation, endpoints
 * taking turns in proportion to their weights. A key goes to `table[hash % tableSize]`: O(1) per
 * pick. Removing one of N endpoints moves about 1/N of the keys. Immutable after construction.
 */
export class MaglevBalancer<E extends LbEndpoint> implements Balancer<E> {
  readonly algorithm = 'maglev' as const;
  readonly endpoints: readonly E[];
  private readonly table: Int32Array;

  constructor(
    endpoints: readonly E[],
    private readonly key: HashKeyReader,
    tableSize: number,
    private readonly random: () => number = Math.random,
  ) {
    this.endpoints = byId(pickable(endpoints));
    this.table = buildTable(this.endpoints, tableSize);
  }

  pick(req: RequestView, exclude?: ReadonlySet<string>): E | undefined {
    const list = this.endpoints;
    if (list.length === 0) return undefined;
    const key = this.key(req);
    if (key === undefined) return randomPick(list, exclude, this.random);
    const table = this.table;
    const m = table.length;
    const slot = murmur32(key) % m;
    let e = list[table[slot] as number] as E;
    if (exclude && exclude.size > 0 && exclude.has(e.id) && allowedEndpoints(list, exclude) !== list) {
      // The next slots hold a weighted sample of the others: probe on for one not tried yet.
      for (let step = 1; step < m && exclude.has(e.id); step++) e = list[table[(slot + step) % m] as number] as E;
      if (exclude.has(e.id)) return randomPick(list, exclude, this.random);
    }
    return e;
  }

  /** Slots each endpoint owns, by id; for the admin page and tests. */
  slotCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const owner of this.table) {
      const id = (this.endpoints[owner] as E).id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    return counts;
  }
}

function buildTable(list: readonly LbEndpoint[], m: number): Int32Array {
  const table = new Int32Array(m).fill(-1);
  const n = list.length;
  if (n === 0) return table;
  const next = new Float64Array(n);
  const skip = new Float64Array(n);
  const target = new Float64Array(n);
  let maxWeight = 0;
  list.forEach((e, i) => {
    next[i] = murmur32(e.id, 0x9e3779b9) % m;
    skip[i] = (murmur32(e.id, 0x85ebca6b) % (m - 1)) + 1;
    maxWeight = Math.max(maxWeight, e.weight);
  });
  let filled = 0;
  for (let round = 0; filled < m; round++) {
    for (let i = 0; i < n && filled < m; i++) {
      const w = (list[i] as LbEndpoint).weight;
      // Envoy's weighting: an endpoint takes a slot in a round only while weight × round has caught up with its target.
      if (w * round < (target[i] as number)) continue;
      target[i] = (target[i] as number) + maxWeight;
      let c = next[i] as number;
      const s = skip[i] as number;
      while (table[c] !== -1) {
        c += s;
        if (c >= m) c -= m;
      }
      table[c] = i;
      filled++;
      c += s;
      next[i] = c >= m ? c - m : c;
    }
  }
  return table;
}
