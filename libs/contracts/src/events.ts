import { z } from 'zod';
import { duration, endpointId, labels, ServiceEndpointSchema, ServiceSchema, serviceName } from './service.schema';

/** `mesh.v1.registry.<svc>.register`: registers or replaces a service and its endpoint set. */
export const ServiceRegisteredV1 = ServiceSchema;

/** `mesh.v1.registry.<svc>.deregister`: drains every endpoint for `drain`, then removes the service. */
export const ServiceDeregisteredV1 = z.strictObject({
  name: serviceName,
  drain: duration(0, 600_000).default(5_000),
});

/** `mesh.v1.registry.<svc>.heartbeat`: the listed endpoints (all when omitted) are alive. */
export const HeartbeatV1 = z.strictObject({
  service: serviceName,
  endpointIds: z.array(endpointId).max(1000).optional(),
});

/** `mesh.v1.registry.<svc>.endpoint.add`: adds or replaces one endpoint. */
export const EndpointAddedV1 = z.strictObject({
  service: serviceName,
  endpoint: ServiceEndpointSchema,
});

/** `mesh.v1.registry.<svc>.endpoint.remove`: drains one endpoint, then removes it. */
export const EndpointRemovedV1 = z.strictObject({
  service: serviceName,
  endpointId,
  drain: duration(0, 600_000).default(5_000),
});

export const EndpointStatus = z.enum(['healthy', 'unhealthy', 'draining']);
export type EndpointStatus = z.output<typeof EndpointStatus>;

export const EndpointStateV1 = z.object({
  id: z.string(),
  address: z.string(),
  port: z.number(),
  weight: z.number(),
  labels: z.record(z.string(), z.string()),
  status: EndpointStatus,
  /** Why the endpoint is not healthy: `declared-unhealthy`, `heartbeat-expired`, `check-failed: …`, `draining`. */
  reason: z.string().optional(),
});

/**
 * `mesh.v1.discovery.endpoints.<svc>`: the current endpoint set of one service, retained as
 * the last message on its subject. `revision` grows with every change; `deregistered` marks
 * the final message of a removed service.
 */
export const EndpointSetV1 = z.object({
  service: z.string(),
  revision: z.number().int(),
  type: z.enum(['http', 'grpc', 'tcp']),
  port: z.number(),
  virtualIP: z.string().optional(),
  endpoints: z.array(EndpointStateV1),
  /** The services this one calls, when it declared them at registration (see ServiceSchema.upstreams). */
  upstreams: z.array(z.string()).optional(),
  deregistered: z.boolean(),
  updatedAt: z.string(),
});

/** `mesh.v1.discovery.query` request: one service by name, or all matching the labels. */
export const DiscoveryQueryV1 = z.strictObject({
  name: serviceName.optional(),
  /** Endpoint label selector; services with no matching endpoint are left out. */
  labels: labels.optional(),
  /** Include endpoints that are not healthy (default true). */
  includeUnhealthy: z.boolean().default(true),
});

export const ErrorBodyV1 = z.object({
  code: z.string(),
  message: z.string(),
  issues: z.array(z.object({ path: z.string(), message: z.string() })),
  /** true when asking again may succeed (the refusal is for now, not for good); absent otherwise. */
  retryable: z.boolean().optional(),
});

export const DiscoveryQueryReplyV1 = z.union([
  z.object({ ok: z.literal(true), services: z.array(EndpointSetV1) }),
  z.object({ ok: z.literal(false), error: ErrorBodyV1 }),
]);

/** `mesh.v1.deadletter.<source>.<svc>`: an event that was refused, with the reason and its origin. */
export const DeadLetterV1 = z.object({
  error: ErrorBodyV1,
  subject: z.string(),
  stream: z.string().optional(),
  streamSeq: z.number().optional(),
  msgId: z.string().optional(),
  deliveryCount: z.number().optional(),
  /** The refused payload, as UTF-8, cut at 4 KiB. */
  payload: z.string(),
  payloadBytes: z.number(),
  rejectedAt: z.string(),
  rejectedBy: z.string(),
});

export type ServiceRegisteredV1 = z.output<typeof ServiceRegisteredV1>;
export type ServiceDeregisteredV1 = z.output<typeof ServiceDeregisteredV1>;
export type HeartbeatV1 = z.output<typeof HeartbeatV1>;
export type EndpointAddedV1 = z.output<typeof EndpointAddedV1>;
export type EndpointRemovedV1 = z.output<typeof EndpointRemovedV1>;
export type EndpointStateV1 = z.output<typeof EndpointStateV1>;
export type EndpointSetV1 = z.output<typeof EndpointSetV1>;
export type DiscoveryQueryV1 = z.output<typeof DiscoveryQueryV1>;
export type DiscoveryQueryInputV1 = z.input<typeof DiscoveryQueryV1>;
export type DiscoveryQueryReplyV1 = z.output<typeof DiscoveryQueryReplyV1>;
export type DeadLetterV1 = z.output<typeof DeadLetterV1>;

/** Which schema validates each registry action. */
export const registrySchemas = {
  register: ServiceRegisteredV1,
  deregister: ServiceDeregisteredV1,
  heartbeat: HeartbeatV1,
  'endpoint.add': EndpointAddedV1,
  'endpoint.remove': EndpointRemovedV1,
} as const;
