import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DependencyIndex } from './dependency.index';
import { effectivePolicyFixture, endpointSetFixture } from './fixtures';
import { MeshView } from './mesh.view';

const sorted = (s: Iterable<string>) => [...s].sort();

describe('DependencyIndex', () => {
  it('touches the service itself, those that declared it, and those that call everything', () => {
    const idx = new DependencyIndex();
    idx.set('web', ['cart']);
    idx.set('cart', undefined);
    idx.set('audit', ['stock']);
    idx.set('stock', []);
    expect(sorted(idx.affectedBy('cart'))).toEqual(['cart', 'web']);
    expect(sorted(idx.affectedBy('stock'))).toEqual(['audit', 'cart', 'stock']);
    expect(sorted(idx.affectedBy('web'))).toEqual(['cart', 'web']);
    // An unregistered service (a policy before registration): only those that would call it.
    expect(sorted(idx.affectedBy('ghost'))).toEqual(['cart']);
    idx.set('web', ['stock']);
    expect(sorted(idx.affectedBy('cart'))).toEqual(['cart']);
    idx.remove('cart');
    expect(sorted(idx.affectedBy('stock'))).toEqual(['audit', 'stock', 'web']);
    expect(idx.services()).toEqual(['audit', 'stock', 'web']);
  });

  it('agrees with a brute-force recomputation: a service is touched iff its snapshot may read the changed one', () => {
    const names = ['a', 'b', 'c', 'd', 'e'];
    const declaration = fc.option(fc.subarray(names), { nil: undefined });
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...names), declaration), fc.constantFrom(...names), (decls, changed) => {
        const idx = new DependencyIndex();
        for (const [s, d] of Object.entries(decls)) idx.set(s, d);
        const expected = Object.entries(decls)
          .filter(([s, d]) => s === changed || d === undefined || d.includes(changed))
          .map(([s]) => s);
        expect(sorted(idx.affectedBy(changed))).toEqual(sorted(expected));
      }),
      { numRuns: 300 },
    );
  });
});

describe('MeshView', () => {
  it('recompiles only the snapshots a change touches, declared vs implicit upstreams', () => {
    const view = new MeshView();
    expect(view.applyEndpoints(endpointSetFixture('web', { upstreams: ['cart'] }))).toEqual(['web']);
    expect(view.applyEndpoints(endpointSetFixture('cart'))).toEqual(['cart', 'web']);
    expect(view.applyEndpoints(endpointSetFixture('audit', { upstreams: ['stock'] }))).toEqual(['audit', 'cart']);
    expect(view.applyEndpoints(endpointSetFixture('web', { upstreams: ['cart'], revision: 2 }))).toEqual(['cart', 'web']);
    expect(view.applyPolicy(effectivePolicyFixture('cart'))).toEqual(['cart', 'web']);
    expect(view.applyPolicy(effectivePolicyFixture('stock'))).toEqual(['audit', 'cart']);
    expect(view.applyEndpoints(endpointSetFixture('cart', { deregistered: true }))).toEqual(['web']);
    expect(view.compile('cart')).toBeUndefined();
    expect(view.compile('web')?.diagnostics.missing).toEqual(['cart']);
    expect(view.applyBundle({ trustDomain: 't', roots: [], updatedAt: '' })).toEqual(['audit', 'web']);
  });
});
