import { describe, expect, it } from 'vitest';
import { effectivePolicyFixture, endpointSetFixture, trafficPolicyFixture } from './fixtures';
import { MeshView } from './mesh.view';

/** A mesh of `callers` services that each declare one upstream, `shared`. */
function meshWithSharedUpstream(callers: number): MeshView {
  const view = new MeshView();
  view.applyEndpoints(endpointSetFixture('shared'));
  for (let i = 0; i < callers; i++) view.applyEndpoints(endpointSetFixture(`caller-${i}`, { upstreams: ['shared'] }));
  return view;
}

describe('MeshView.applyPolicy: which snapshots a policy change touches', () => {
  it('a first effective policy touches the service and every caller', () => {
    const view = meshWithSharedUpstream(3);
    expect(view.applyPolicy(effectivePolicyFixture('shared'))).toEqual(['caller-0', 'caller-1', 'caller-2', 'shared']);
  });

  it('an inbound-only change (authorization, rate limits) touches only the service itself, and its snapshot changes', () => {
    const view = meshWithSharedUpstream(3);
    view.applyPolicy(effectivePolicyFixture('shared'));
    const callerBefore = view.compile('caller-0')?.hash;
    const ownBefore = view.compile('shared')?.hash;
    const denied = effectivePolicyFixture('shared', {
      revision: 2,
      authorization: {
        defaultAction: 'DENY',
        policies: [],
      },
    });
    expect(view.applyPolicy(denied)).toEqual(['shared']);
    expect(view.compile('shared')?.hash).not.toBe(ownBefore);
    // What the callers were spared recompiling is indeed the same.
    expect(view.compile('caller-0')?.hash).toBe(callerBefore);
  });

  it('a change callers see (traffic policy, mTLS mode) touches the service and every caller', () => {
    const view = meshWithSharedUpstream(2);
    view.applyPolicy(effectivePolicyFixture('shared'));
    const callerBefore = view.compile('caller-1')?.hash;
    const traffic = effectivePolicyFixture('shared', { revision: 2, traffic: trafficPolicyFixture('shared') });
    expect(view.applyPolicy(traffic)).toEqual(['caller-0', 'caller-1', 'shared']);
    expect(view.compile('caller-1')?.hash).not.toBe(callerBefore);
    const strict = effectivePolicyFixture('shared', {
      revision: 3,
      traffic: trafficPolicyFixture('shared'),
      mtls: { mode: 'strict', source: 'mtls/shared' },
    });
    expect(view.applyPolicy(strict)).toEqual(['caller-0', 'caller-1', 'shared']);
  });
});
