import type { Balancer, LbEndpoint } from './balancer';
import { allowedEndpoints, byId, pickable, randomPick } from './balancer';
import { murmur32 } from './hash';
import type { HashKeyReader, RequestView } from './request-view';

/** Ring entries pack `position × OWNERS + owner index` in one float64, so a native numeric sort orders them. */
const OWNERS = 2 ** 21;
/** Ring points of the lightest endpoint at least: ±6 % load spread, and 256 × N entries for N equal endpoints. */
const LIGHTEST_POINTS = 256;

/**
 * Ketama-style consistent hashing, sized like Envoy's ring hash: every endpoint gets ring points
 * (`murmur32("<id>_<n>")`) in proportion to its weight, at least `minRingSize` in all and 256 for
 * the lightest endpoint, at most `maxRingSize`; a key goes to the first point at or after its
 * hash (binary search). Same key → same endpoint while the set is unchanged; removing one of N
 * endpoints moves only its keys (about 1/N). Immutable after construction.
 */
export class RingHashBalancer<E extends LbEndpoint> implements Balancer<E> {
  readonly algorithm = 'ring-hash' as const;
  readonly endpoints: readonly E[];
  /** Sorted positions (32-bit hashes) and, at the same index, the owning endpoint. */
  private readonly positions: Uint32Array;
  private readonly owners: Uint32Array;

  constructor(
    endpoints: readonly E[],
    private readonly key: HashKeyReader,
    opts: { minRingSize: number; maxRingSize: number },
    private readonly random: () => number = Math.random,
  ) {
    this.endpoints = byId(pickable(endpoints)).slice(0, OWNERS);
    const list = this.endpoints;
    const total = list.reduce((s, e) => s + e.weight, 0);
    if (list.length === 0) {
      this.positions = new Uint32Array(0);
      this.owners = new Uint32Array(0);
      return;
    }
    // Envoy's sizing (the lightest endpoint gets its share of minRingSize, the ring at most maxRingSize
    // entries), except that the lightest endpoint gets at least LIGHTEST_POINTS points. That keeps every
    // endpoint's point count independent of how many others there are (for four or more equal
    // endpoints at the default minRingSize), so removing one moves only its own keys.
    const minShare = list.reduce((m, e) => Math.min(m, e.weight), Number.POSITIVE_INFINITY) / total;
    const scale = Math.min(Math.max(Math.ceil(minShare * opts.minRingSize), LIGHTEST_POINTS) / minShare, opts.maxRingSize);
    const counts = list.map((e) => Math.round((scale * e.weight) / total));
    const ring = new Float64Array(counts.reduce((s, c) => s + c, 0));
    let size = 0;
    list.forEach((e, owner) => {
      const count = counts[owner] as number;
      for (let i = 0; i < count; i++) ring[size++] = murmur32(`${e.id}_${i}`) * OWNERS + owner;
    });
    const sorted = ring.sort();
    this.positions = new Uint32Array(size);
    this.owners = new Uint32Array(size);
    for (let i = 0; i < size; i++) {
      const v = sorted[i] as number;
      this.positions[i] = Math.floor(v / OWNERS);
      this.owners[i] = v % OWNERS;
    }
  }

  /** Ring entries, for the admin page and tests. */
  get ringSize(): number {
    return this.positions.length;
  }

  pick(req: RequestView, exclude?: ReadonlySet<string>): E | undefined {
    const list = this.endpoints;
    if (list.length === 0) return undefined;
    const key = this.key(req);
    if (key === undefined) return randomPick(list, exclude, this.random);
    const { positions, owners } = this;
    const n = positions.length;
    const h = murmur32(key);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((positions[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    if (lo === n) lo = 0;
    let e = list[owners[lo] as number] as E;
    if (exclude && exclude.size > 0 && exclude.has(e.id) && allowedEndpoints(list, exclude) !== list) {
      // Walk on along the ring to the next endpoint not tried yet, as Envoy does on a retry.
      for (let step = 1; step < n && exclude.has(e.id); step++) e = list[owners[(lo + step) % n] as number] as E;
      if (exclude.has(e.id)) return randomPick(list, exclude, this.random);
    }
    return e;
  }
}
