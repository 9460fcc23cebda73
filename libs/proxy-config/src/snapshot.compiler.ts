import {
  DEFAULT_NAMESPACE,
  type EffectivePolicyV1,
  type EndpointSetV1,
  type InboundV1,
  type Issue,
  NAMESPACE_LABEL,
  type RevocationListV1,
  type SnapshotEndpointV1,
  type SnapshotRouteV1,
  type SnapshotTrustV1,
  type Subset,
  type TrustBundleV1,
  type UpstreamV1,
} from '@novamesh/contracts';
import { canonicalJson } from './canonical-json';
import { joinSnapshotJson, type SnapshotContent, sha256Hex } from './snapshot.hash';

/** Trust domain of identities before the certificate authority has published a bundle. */
export const DEFAULT_TRUST_DOMAIN = 'novamesh.local';

/** What one service's snapshot is built from: the mesh as the last-value streams describe it. */
export interface CompileInput {
  service: string;
  /** Current endpoint sets of the registered services, by name (deregistered ones are ignored). */
  endpoints: ReadonlyMap<string, EndpointSetV1>;
  /** Effective policies, by service; a service without one gets the defaults. */
  policies: ReadonlyMap<string, EffectivePolicyV1>;
  bundle?: TrustBundleV1;
  revoked?: RevocationListV1;
}

export interface CompileDiagnostics {
  /** Declared upstreams that are not registered (yet): left out until they are. */
  missing: string[];
  /**
   * Inconsistencies in the inputs that did not stop the compile: two RouteRules of an upstream
   * defining one subset name differently (the first rule, in rule order, wins), endpoints of one
   * service disagreeing on their namespace (the first endpoint by id wins).
   */
  warnings: Issue[];
}

export interface CompiledSnapshot {
  content: SnapshotContent;
  /** `canonicalJson` of `content` ({ service, inbound, upstreams, trust }): what `hash` is the SHA-256 of. */
  canonical: string;
  /** `hashSnapshot(content)`. */
  hash: string;
  diagnostics: CompileDiagnostics;
}

/** A compiled part of a snapshot with its canonical JSON. */
interface Part<T> {
  value: T;
  json: string;
}

interface UpstreamPart extends Part<UpstreamV1> {
  /** What it was compiled from, besides its endpoint set (the memo's key). */
  policy: EffectivePolicyV1 | undefined;
  trustDomain: string;
  warnings: Issue[];
}

/**
 * Compiled parts shared by many snapshots, each with its canonical JSON: an upstream (one per
 * endpoint set object, for one effective policy object and trust domain), an inbound side (per
 * effective policy object), the trust section (per bundle and revocation list object). A service
 * every other one calls is then compiled and serialized once per change instead of once per
 * caller. Keyed by object identity, so the inputs must be replaced, never mutated, when they
 * change (MeshView's are: each message is a new object); entries of replaced inputs are dropped
 * with them (weak keys). Inbound sides are also shared by content: a mesh-wide policy gives every
 * service a new effective policy object with the same inbound side, which is then serialized
 * canonically once, not once per service (its plain JSON, far cheaper, is the key). What
 * `compileSnapshot` returns shares these parts: treat it as read-only.
 */
export class CompileMemo {
  /** Distinct inbound sides kept by content, the oldest dropped beyond this many. */
  static readonly MAX_INBOUNDS_BY_CONTENT = 4_096;
  readonly upstreams = new WeakMap<EndpointSetV1, UpstreamPart>();
  readonly inbounds = new WeakMap<EffectivePolicyV1, Part<InboundV1>>();
  /** Inbound parts by the plain JSON of their value (equal JSON, equal value and key order, equal canonical JSON). */
  readonly inboundsByContent = new Map<string, Part<InboundV1>>();
  trust: { bundle: TrustBundleV1; revoked: RevocationListV1 | undefined; part: Part<SnapshotTrustV1> } | undefined;
}

/** Inbound settings of a service no policy targets: permissive mTLS, allow everything, no limits. */
export const DEFAULT_INBOUND: InboundV1 = Object.freeze({
  mtls: { mode: 'permissive' },
  authorization: { defaultAction: 'ALLOW', policies: [] },
  rateLimits: [],
}) as InboundV1;

/**
 * Builds the snapshot content of `input.service`: its inbound side from its own effective
 * policy, and one UpstreamV1 per service it calls — the ones it declared (`upstreams` of its
 * endpoint set; the unregistered ones are listed in `diagnostics.missing`), else every registered
 * service, itself included (a service may call itself, as in Istio). Pure and deterministic:
 * upstreams sorted by name, endpoints by id, revoked serials sorted and lower-cased. With a
 * `memo` the parts already compiled from the same input objects are reused (see CompileMemo); the
 * result is the same either way. `canonical` is built from the parts' canonical JSON, so the hash
 * is `hashSnapshot(content)` without serializing the whole snapshot again.
 */
export function compileSnapshot(input: CompileInput, memo?: CompileMemo): CompiledSnapshot {
  const { service } = input;
  const warnings: Issue[] = [];
  const missing: string[] = [];
  const trustDomain = input.bundle?.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const registered = (name: string) => {
    const set = input.endpoints.get(name);
    return set && !set.deregistered ? set : undefined;
  };

  const declared = registered(service)?.upstreams;
  const names = declared ? [...new Set(declared)] : [...input.endpoints.keys()];
  const upstreams: UpstreamV1[] = [];
  const upstreamJsons: string[] = [];
  for (const name of names.sort()) {
    const set = registered(name);
    if (!set) {
      if (declared) missing.push(name);
      continue;
    }
    const part = upstreamPart(set, input.policies.get(name), trustDomain, memo);
    upstreams.push(part.value);
    upstreamJsons.push(part.json);
    warnings.push(...part.warnings);
  }

  const inbound = inboundPart(input.policies.get(service), memo);
  const trust = input.bundle ? trustPart(input.bundle, input.revoked, memo) : undefined;
  const content: SnapshotContent = { service, inbound: inbound.value, upstreams, ...(trust ? { trust: trust.value } : {}) };
  const canonical = joinSnapshotJson(service, inbound.json, upstreamJsons, trust?.json);
  return { content, canonical, hash: sha256Hex(canonical), diagnostics: { missing, warnings } };
}

function upstreamPart(set: EndpointSetV1, policy: EffectivePolicyV1 | undefined, trustDomain: string, memo?: CompileMemo): UpstreamPart {
  const hit = memo?.upstreams.get(set);
  if (hit && hit.policy === policy && hit.trustDomain === trustDomain) return hit;
  const warnings: Issue[] = [];
  const value = compileUpstream(set, policy, trustDomain, warnings);
  const part = { value, json: canonicalJson(value), policy, trustDomain, warnings };
  memo?.upstreams.set(set, part);
  return part;
}

let defaultInbound: Part<InboundV1> | undefined;

function inboundPart(policy: EffectivePolicyV1 | undefined, memo?: CompileMemo): Part<InboundV1> {
  if (!policy) {
    defaultInbound ??= { value: DEFAULT_INBOUND, json: canonicalJson(DEFAULT_INBOUND) };
    return defaultInbound;
  }
  if (!memo) {
    const value = compileInbound(policy);
    return { value, json: canonicalJson(value) };
  }
  const hit = memo.inbounds.get(policy);
  if (hit) return hit;
  const value = compileInbound(policy);
  const key = JSON.stringify(value);
  let part = memo.inboundsByContent.get(key);
  if (!part) {
    part = { value, json: canonicalJson(value) };
    memo.inboundsByContent.set(key, part);
    if (memo.inboundsByContent.size > CompileMemo.MAX_INBOUNDS_BY_CONTENT)
      memo.inboundsByContent.delete(memo.inboundsByContent.keys().next().value as string);
  }
  memo.inbounds.set(policy, part);
  return part;
}

function trustPart(bundle: TrustBundleV1, revoked: RevocationListV1 | undefined, memo?: CompileMemo): Part<SnapshotTrustV1> {
  const hit = memo?.trust;
  if (hit && hit.bundle === bundle && hit.revoked === revoked) return hit.part;
  const value = compileTrust(bundle, revoked);
  const part = { value, json: canonicalJson(value) };
  if (memo) memo.trust = { bundle, revoked, part };
  return part;
}

function compileInbound(policy: EffectivePolicyV1): InboundV1 {
  return {
    mtls: { mode: policy.mtls.mode, ...(policy.mtls.certificates ? { certificates: policy.mtls.certificates } : {}) },
    authorization: { defaultAction: policy.authorization.defaultAction, policies: policy.authorization.policies },
    rateLimits: policy.rateLimits,
  };
}

function compileTrust(bundle: TrustBundleV1, revoked: RevocationListV1 | undefined): SnapshotTrustV1 {
  const serials = new Set((revoked?.serials ?? []).map((s) => s.toLowerCase().replace(/:/g, '')));
  return { trustDomain: bundle.trustDomain, roots: bundle.roots.map((r) => r.pem), revokedSerials: [...serials].sort() };
}

function compileUpstream(set: EndpointSetV1, policy: EffectivePolicyV1 | undefined, trustDomain: string, warnings: Issue[]): UpstreamV1 {
  const endpoints: SnapshotEndpointV1[] = set.endpoints
    .map((e) => ({ id: e.id, address: e.address, port: e.port, weight: e.weight, labels: e.labels, status: e.status }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const traffic = policy?.traffic ?? null;
  const subsets: Subset[] = [];
  const subsetRule = new Map<string, string>();
  const routes: SnapshotRouteV1[] = [];
  for (const rule of policy?.routes ?? []) {
    for (const subset of rule.subsets) {
      const first = subsetRule.get(subset.name);
      if (first === undefined) {
        subsetRule.set(subset.name, rule.name);
        subsets.push(subset);
        continue;
      }
      const kept = subsets.find((s) => s.name === subset.name);
      if (kept && canonicalJson(kept.labels) !== canonicalJson(subset.labels))
        warnings.push({
          path: `upstreams.${set.service}.subsets.${subset.name}`,
          message: `RouteRules "${first}" and "${rule.name}" define subset "${subset.name}" differently; "${first}" (first in rule order) is used`,
        });
    }
    for (const route of rule.routes) routes.push({ ...route, rule: rule.name });
  }
  return {
    service: set.service,
    type: set.type,
    port: set.port,
    identity: `spiffe://${trustDomain}/ns/${namespaceOf(set, endpoints, warnings)}/svc/${set.service}`,
    mtls: policy?.mtls.mode ?? 'permissive',
    loadBalancing: traffic?.loadBalancing ?? { algorithm: 'round-robin' },
    ...(traffic?.circuitBreaking ? { circuitBreaking: traffic.circuitBreaking } : {}),
    ...(traffic?.outlierDetection ? { outlierDetection: traffic.outlierDetection } : {}),
    ...(traffic?.timeouts ? { timeouts: traffic.timeouts } : {}),
    ...(traffic?.retries ? { retries: traffic.retries } : {}),
    subsets,
    routes,
    endpoints,
    endpointsRevision: set.revision,
  };
}

/** The namespace the endpoints' label names (first endpoint by id that has one), else `default`. */
function namespaceOf(set: EndpointSetV1, sorted: SnapshotEndpointV1[], warnings: Issue[]): string {
  const namespaces = [...new Set(sorted.map((e) => e.labels[NAMESPACE_LABEL]).filter((n): n is string => n !== undefined))];
  if (namespaces.length > 1)
    warnings.push({
      path: `upstreams.${set.service}.endpoints`,
      message: `endpoints disagree on label ${NAMESPACE_LABEL} (${namespaces.join(', ')}); the identity uses "${namespaces[0]}"`,
    });
  return namespaces[0] ?? DEFAULT_NAMESPACE;
}
