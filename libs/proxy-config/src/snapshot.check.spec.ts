import { describe, expect, it } from 'vitest';
import { canaryRuleFixture, effectivePolicyFixture, endpointSetFixture } from './fixtures';
import { checkSnapshot } from './snapshot.check';
import { type CompiledSnapshot, compileSnapshot } from './snapshot.compiler';
import { hashSnapshot } from './snapshot.hash';

function compiled(): CompiledSnapshot {
  const sets = [endpointSetFixture('web'), endpointSetFixture('cart')];
  return compileSnapshot({
    service: 'web',
    endpoints: new Map(sets.map((s) => [s.service, s])),
    policies: new Map([['cart', effectivePolicyFixture('cart', { routes: [canaryRuleFixture('cart')] })]]),
  });
}

/** The compiled content, edited by `edit`, with its hash recomputed (so only the edit is wrong). */
function edited(edit: (c: CompiledSnapshot['content']) => void) {
  const c = structuredClone(compiled().content);
  edit(c);
  return { ...c, hash: hashSnapshot(c), version: 1 };
}

describe('checkSnapshot', () => {
  it('accepts a compiled snapshot', () => {
    const { content, hash } = compiled();
    expect(checkSnapshot({ ...content, hash, version: 3 })).toEqual([]);
  });

  it('refuses a split to a subset the upstream does not define', () => {
    const s = edited((c) => {
      c.upstreams[0]!.subsets = [{ name: 'v1', labels: { version: 'v1' } }];
    });
    expect(checkSnapshot(s)).toEqual([
      { path: 'upstreams[0].routes[0].split[1].subset', message: 'subset "v2" is not defined for upstream "cart" (subsets: v1)' },
    ]);
  });

  it('refuses a mirror to an undefined subset, weights not summing to 100 and invalid ports', () => {
    const s = edited((c) => {
      const route = c.upstreams[0]!.routes[0]!;
      route.mirror = { subset: 'shadow', percentage: 5 };
      route.split = [
        { subset: 'v1', weight: 90 },
        { subset: 'v2', weight: 20 },
      ];
      c.upstreams[1]!.port = 0;
      c.upstreams[1]!.endpoints[0]!.port = 70_000;
    });
    expect(checkSnapshot(s).map((i) => i.path)).toEqual([
      'upstreams[0].routes[0].split',
      'upstreams[0].routes[0].mirror.subset',
      'upstreams[1].port',
      'upstreams[1].endpoints[0].port',
    ]);
  });

  it('refuses duplicate or unsorted upstreams, a foreign identity and an empty trust bundle', () => {
    const s = edited((c) => {
      c.upstreams.push(structuredClone(c.upstreams[0]!));
      c.upstreams[1]!.identity = 'spiffe://novamesh.local/ns/default/svc/other';
      c.trust = { trustDomain: 'novamesh.local', roots: [], revokedSerials: [] };
    });
    expect(checkSnapshot(s).map((i) => i.path)).toEqual(['upstreams[1].identity', 'upstreams[2].service', 'trust.roots']);
  });

  it('refuses a hash that does not match the content, and a version below 1', () => {
    const { content, hash } = compiled();
    const tampered = { ...structuredClone(content), hash, version: 0 };
    tampered.upstreams[0]!.endpoints[0]!.weight = 5;
    expect(checkSnapshot(tampered).map((i) => i.path)).toEqual(['version', 'hash']);
  });
});
