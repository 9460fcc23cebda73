import { z } from 'zod';
import { EndpointStatus, ErrorBodyV1 } from './events';
import { AuthorizationPolicySchema } from './policy/authorization-policy.schema';
import { MTLS_MODES } from './policy/mutual-tls-policy.schema';
import { RateLimitPolicySchema } from './policy/rate-limit-policy.schema';
import { RouteSchema, SubsetSchema } from './policy/route-rule.schema';
import {
  CircuitBreakingSchema,
  LoadBalancingSchema,
  OutlierDetectionSchema,
  RetryPolicySchema,
  TimeoutsSchema,
} from './policy/traffic-policy.schema';
import { serviceName } from './service.schema';

// Payloads between proxy-config and the sidecars: the per-service proxy snapshot
// (`mesh.v1.config.proxy.<service>`), the sidecars' acknowledgements (`mesh.v1.proxy.ack.<service>.<sidecar>`)
// and `mesh.v1.proxy.status` (what `meshctl proxy-status` shows).

/**
 * Endpoint label a sidecar puts on the endpoint it registers (value: the sidecar id). Callers
 * originate mutual TLS only to endpoints carrying it (an endpoint without a sidecar speaks plain
 * HTTP), as Istio's auto-mTLS does.
 */
export const SIDECAR_LABEL = 'novamesh.io/sidecar';

/** Endpoint label naming the namespace of the workload behind it (SPIFFE ID `ns/<namespace>`); default `default`. */
export const NAMESPACE_LABEL = 'novamesh.io/namespace';
export const DEFAULT_NAMESPACE = 'default';

/** Endpoint label naming the endpoint's locality (zone); a sidecar prefers upstream endpoints of its own zone. */
export const LOCALITY_LABEL = 'novamesh.io/zone';

/** The endpoint labels a sidecar always sets itself on the endpoint it registers (from its id and namespace). */
export const SIDECAR_SET_LABELS: ReadonlySet<string> = new Set([SIDECAR_LABEL, NAMESPACE_LABEL]);

export const SnapshotEndpointV1 = z.object({
  id: z.string(),
  address: z.string(),
  port: z.number().int(),
  weight: z.number().int(),
  labels: z.record(z.string(), z.string()),
  /** Only `healthy` endpoints receive new requests; `draining` ones finish what they have. */
  status: EndpointStatus,
});
export type SnapshotEndpointV1 = z.output<typeof SnapshotEndpointV1>;

/** A route of an upstream: a RouteRule route with the rule it came from, evaluated in order; the first match wins. */
export const SnapshotRouteV1 = RouteSchema.and(z.object({ rule: z.string() }));
export type SnapshotRouteV1 = z.output<typeof SnapshotRouteV1>;

/**
 * One service this sidecar's workload calls, with everything the caller side needs: its
 * endpoints, the upstream's TrafficPolicy settings (load balancing, circuit breaking, outlier
 * detection, timeouts, retries), its RouteRules' subsets and routes, and whether to speak mTLS.
 * A request no route matches goes to every endpoint of the service.
 */
export const UpstreamV1 = z.object({
  service: z.string(),
  type: z.enum(['http', 'grpc', 'tcp']),
  port: z.number().int(),
  /** The SPIFFE ID the upstream's sidecars present: `spiffe://<td>/ns/<namespace>/svc/<service>`. */
  identity: z.string(),
  /** The upstream's own mTLS mode: `disable` means plaintext even to sidecars. */
  mtls: z.enum(MTLS_MODES),
  loadBalancing: LoadBalancingSchema,
  circuitBreaking: CircuitBreakingSchema.optional(),
  outlierDetection: OutlierDetectionSchema.optional(),
  timeouts: TimeoutsSchema.optional(),
  retries: RetryPolicySchema.optional(),
  subsets: z.array(SubsetSchema),
  routes: z.array(SnapshotRouteV1),
  endpoints: z.array(SnapshotEndpointV1),
  /** Revision of the endpoint set this was built from. */
  endpointsRevision: z.number().int(),
});
export type UpstreamV1 = z.output<typeof UpstreamV1>;

/** What the sidecar enforces on traffic to its own workload. */
export const InboundV1 = z.object({
  mtls: z.object({
    mode: z.enum(MTLS_MODES),
    /** Bring-your-own certificate files (MutualTLSPolicy.certificates) to use instead of mesh-issued ones. */
    certificates: z.object({ certPath: z.string(), keyPath: z.string(), caPath: z.string() }).optional(),
  }),
  authorization: z.object({
    defaultAction: z.enum(['ALLOW', 'DENY']),
    /** DENY is evaluated first, then ALLOW; AUDIT only marks the access log. */
    policies: z.array(AuthorizationPolicySchema),
  }),
  rateLimits: z.array(RateLimitPolicySchema),
});
export type InboundV1 = z.output<typeof InboundV1>;

export const SnapshotTrustV1 = z.object({
  trustDomain: z.string(),
  /** PEM roots a peer's chain must end in; two during a root rotation. */
  roots: z.array(z.string()),
  /** Serials (lower-case hex) of revoked certificates. */
  revokedSerials: z.array(z.string()),
});
export type SnapshotTrustV1 = z.output<typeof SnapshotTrustV1>;

/**
 * `mesh.v1.config.proxy.<service>`: everything the sidecars of one service need, as one immutable
 * value. `version` grows by one with every change of content; `hash` is the SHA-256 (hex) of the
 * canonical JSON of `{ service, inbound, upstreams, trust }`, so equal content has an equal hash
 * whichever proxy-config replica built it. Published only when the hash changes; the last value per
 * subject is kept in stream MESH_PROXY.
 */
export const ProxySnapshotV1 = z.object({
  service: z.string(),
  version: z.number().int().min(1),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  inbound: InboundV1,
  /** Sorted by service name; the service's `upstreams` when it declared them, else every service. */
  upstreams: z.array(UpstreamV1),
  /** Absent until the certificate authority has published a bundle. */
  trust: SnapshotTrustV1.optional(),
});
export type ProxySnapshotV1 = z.output<typeof ProxySnapshotV1>;

/** Sidecar ids: letters, digits, `-` and `_` (one NATS subject token). */
export const sidecarId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'");

/** The longest refusal reason an acknowledgement carries (the sidecar cuts its reasons to it). */
export const ACK_REASON_MAX = 2048;
/** A snapshot content hash as an acknowledgement reports it ('' before the first snapshot). */
const ackHash = z.string().max(128, 'must be at most 128 characters');
const ackTime = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 time (e.g. 2026-11-28T10:00:00.000Z)' });

/**
 * `mesh.v1.proxy.ack.<service>.<sidecar>` (core NATS): a sidecar reports the snapshot version it
 * applied, or a version it refused and why. Sent on every change and every 10 s as a heartbeat, so a
 * restarted proxy-config knows every sidecar within one period.
 */
export const ProxyAckV1 = z.strictObject({
  service: serviceName,
  sidecar: sidecarId,
  /** Version and hash in use; 0 and '' before the first snapshot. */
  version: z.number().int().min(0),
  hash: ackHash,
  /** When the version in use was applied (ISO 8601). */
  appliedAt: ackTime.optional(),
  /** The last snapshot refused, with the reason (at most 2,048 characters); it keeps serving `version`. */
  rejected: z
    .object({
      version: z.number().int().min(0),
      hash: ackHash,
      reason: z.string().max(ACK_REASON_MAX, `must be at most ${ACK_REASON_MAX} characters`),
    })
    .optional(),
  /** Where the sidecar is, for operators. */
  address: z.string().max(256, 'must be at most 256 characters').optional(),
  /**
   * The sidecar's last acknowledgement: it is stopping cleanly (SIGTERM, after its drain), so
   * proxy-config forgets it at once instead of reporting it stale, then forgetting it 10 minutes later.
   */
  leaving: z.literal(true, { error: 'must be true when present (the sidecar is stopping)' }).optional(),
  sentAt: ackTime,
});
export type ProxyAckV1 = z.output<typeof ProxyAckV1>;

/** `mesh.v1.proxy.status` request: every sidecar, or those of one service. */
export const ProxyStatusRequestV1 = z.strictObject({ service: z.string().optional() });
export type ProxyStatusRequestV1 = z.output<typeof ProxyStatusRequestV1>;

export const ProxyStatusEntryV1 = z.object({
  service: z.string(),
  sidecar: z.string(),
  address: z.string().optional(),
  version: z.number().int(),
  /** The latest snapshot version of the service; 0 when none was published. */
  latestVersion: z.number().int(),
  inSync: z.boolean(),
  /** ms the sidecar is behind: time since the first version it has not applied was published; 0 when in sync. */
  lagMs: z.number(),
  /** ms since the sidecar's last acknowledgement. */
  lastSeenMs: z.number(),
  /** Sidecars silent for 30 s are reported stale (the process may be gone). */
  stale: z.boolean(),
  rejected: z.object({ version: z.number().int(), hash: z.string(), reason: z.string() }).optional(),
});
export type ProxyStatusEntryV1 = z.output<typeof ProxyStatusEntryV1>;

export const ProxyStatusReplyV1 = z.union([
  z.object({ ok: z.literal(true), sidecars: z.array(ProxyStatusEntryV1) }),
  z.object({ ok: z.literal(false), error: ErrorBodyV1 }),
]);
export type ProxyStatusReplyV1 = z.output<typeof ProxyStatusReplyV1>;
