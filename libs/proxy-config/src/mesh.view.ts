import type { EffectivePolicyV1, EndpointSetV1, RevocationListV1, TrustBundleV1 } from '@novamesh/contracts';
import { canonicalJson } from './canonical-json';
import { DependencyIndex } from './dependency.index';
import { type CompiledSnapshot, CompileMemo, compileSnapshot } from './snapshot.compiler';

/**
 * The mesh as one proxy-config replica sees it: the last endpoint set and effective policy of
 * each service, the trust bundle and the revocation list. Each `apply…` returns the services whose
 * snapshot may have changed (the dependency index decides), so the caller recompiles only those.
 * Owned by one caller; not safe for concurrent use.
 */
export class MeshView {
  private readonly endpoints = new Map<string, EndpointSetV1>();
  private readonly policies = new Map<string, EffectivePolicyV1>();
  /** Each service's policy as its callers read it (callerView), kept so a change compares against it once. */
  private readonly callerViews = new Map<string, string>();
  private bundle: TrustBundleV1 | undefined;
  private revoked: RevocationListV1 | undefined;
  private readonly index = new DependencyIndex();
  /** Upstreams, inbound sides and the trust section compiled once per input object, shared by the snapshots. */
  private readonly memo = new CompileMemo();

  /** A service's endpoint set changed (registered, updated, or `deregistered`). */
  applyEndpoints(set: EndpointSetV1): string[] {
    const before = this.index.affectedBy(set.service);
    if (set.deregistered) {
      this.endpoints.delete(set.service);
      this.index.remove(set.service);
    } else {
      this.endpoints.set(set.service, set);
      this.index.set(set.service, set.upstreams);
    }
    for (const s of this.index.affectedBy(set.service)) before.add(s);
    return this.registeredOf(before);
  }

  /**
   * A service's effective policy changed. Its callers' snapshots read only the part of it that
   * says how to call the service (traffic policy, route rules, mTLS mode): when that part is the
   * same, only the service's own snapshot (its inbound side) is touched — so a mesh-wide
   * authorization change does not recompile every caller of every service.
   */
  applyPolicy(policy: EffectivePolicyV1): string[] {
    const previous = this.callerViews.get(policy.service);
    const view = callerView(policy);
    this.policies.set(policy.service, policy);
    this.callerViews.set(policy.service, view);
    if (previous === view) return this.registeredOf([policy.service]);
    return this.registeredOf(this.index.affectedBy(policy.service));
  }

  /** Every snapshot carries the trust section. */
  applyBundle(bundle: TrustBundleV1): string[] {
    this.bundle = bundle;
    return this.services();
  }

  applyRevocations(list: RevocationListV1): string[] {
    this.revoked = list;
    return this.bundle ? this.services() : [];
  }

  /** Registered services, sorted. */
  services(): string[] {
    return this.index.services();
  }

  isRegistered(service: string): boolean {
    return this.index.has(service);
  }

  /** The snapshot of a registered service, or undefined when it is not registered. */
  compile(service: string): CompiledSnapshot | undefined {
    if (!this.index.has(service)) return undefined;
    return compileSnapshot(
      {
        service,
        endpoints: this.endpoints,
        policies: this.policies,
        ...(this.bundle ? { bundle: this.bundle } : {}),
        ...(this.revoked ? { revoked: this.revoked } : {}),
      },
      this.memo,
    );
  }

  private registeredOf(services: Iterable<string>): string[] {
    return [...services].filter((s) => this.index.has(s)).sort();
  }
}

/** What a caller's snapshot takes from an upstream's effective policy (see compileUpstream), canonical. */
function callerView(policy: EffectivePolicyV1): string {
  return canonicalJson({ traffic: policy.traffic ?? null, routes: policy.routes, mtls: policy.mtls.mode });
}
