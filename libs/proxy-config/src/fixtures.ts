import {
  type EffectivePolicyV1,
  type EndpointSetV1,
  type EndpointStateV1,
  NAMESPACE_LABEL,
  type RateLimitPolicy,
  RateLimitPolicySchema,
  type RouteRule,
  RouteRuleSchema,
  type TrafficPolicy,
  TrafficPolicySchema,
} from '@novamesh/contracts';

/**
 * An endpoint set as discovery publishes it, for tests: `count` healthy endpoints labelled
 * `version: v1|v2` alternately (and with `namespace` when given).
 */
export function endpointSetFixture(
  service: string,
  opts: {
    revision?: number;
    count?: number;
    endpoints?: EndpointStateV1[];
    upstreams?: string[];
    namespace?: string;
    port?: number;
    type?: EndpointSetV1['type'];
    deregistered?: boolean;
  } = {},
): EndpointSetV1 {
  const endpoints =
    opts.endpoints ??
    Array.from({ length: opts.count ?? 2 }, (_, i) => ({
      id: `${service}-${i + 1}`,
      address: `10.0.${i >> 8}.${(i % 250) + 1}`,
      port: 9000 + i,
      weight: 1,
      labels: { version: i % 2 === 0 ? 'v1' : 'v2', ...(opts.namespace ? { [NAMESPACE_LABEL]: opts.namespace } : {}) },
      status: 'healthy' as const,
    }));
  return {
    service,
    revision: opts.revision ?? 1,
    type: opts.type ?? 'http',
    port: opts.port ?? 8080,
    endpoints,
    ...(opts.upstreams ? { upstreams: opts.upstreams } : {}),
    deregistered: opts.deregistered ?? false,
    updatedAt: '2025-01-01T00:00:00.000Z',
  };
}

/** A route rule splitting `service` 90/10 between subsets v1 and v2 (labels `version`). */
export function canaryRuleFixture(service: string, name = `${service}-canary`): RouteRule {
  return RouteRuleSchema.parse({
    kind: 'RouteRule',
    name,
    serviceName: service,
    subsets: [
      { name: 'v1', labels: { version: 'v1' } },
      { name: 'v2', labels: { version: 'v2' } },
    ],
    routes: [
      {
        name: 'canary',
        match: {},
        split: [
          { subset: 'v1', weight: 90 },
          { subset: 'v2', weight: 10 },
        ],
      },
    ],
  });
}

/** A traffic policy with least-request balancing, a circuit breaker and retries. */
export function trafficPolicyFixture(service: string): TrafficPolicy {
  return TrafficPolicySchema.parse({
    kind: 'TrafficPolicy',
    name: `${service}-traffic`,
    serviceName: service,
    loadBalancing: { algorithm: 'least-request', choiceCount: 2 },
    circuitBreaking: { maxConnections: 100, maxPendingRequests: 10 },
    timeouts: { request: '2s' },
    retries: { attempts: 2, perTryTimeout: '500ms' },
  });
}

export function rateLimitFixture(service: string): RateLimitPolicy {
  return RateLimitPolicySchema.parse({
    kind: 'RateLimitPolicy',
    name: `${service}-limits`,
    serviceName: service,
    limits: [{ name: 'per-caller', requests: 100, per: 'second', key: { type: 'source-identity' } }],
  });
}

/** An effective policy as the policy service publishes it; defaults everywhere unless given. */
export function effectivePolicyFixture(service: string, parts: Partial<EffectivePolicyV1> = {}): EffectivePolicyV1 {
  return {
    service,
    revision: 1,
    traffic: null,
    routes: [],
    rateLimits: [],
    authorization: { defaultAction: 'ALLOW', policies: [] },
    mtls: { mode: 'permissive', source: null },
    sources: [],
    updatedAt: '2025-01-01T00:00:00.000Z',
    ...parts,
  };
}
