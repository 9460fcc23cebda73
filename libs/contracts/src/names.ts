/**
 * The single table of NATS names Novamesh uses: subjects, streams, consumers and KV buckets.
 *
 * These names are the public API (docs/asyncapi.yaml lists every subject). Renaming any of them is a
 * breaking change that needs a migration (a new `mesh.v2.` subject tree or a stream move);
 * within v1 only additions are allowed.
 */

export const SUBJECT_ROOT = 'mesh.v1';

/** Service names double as NATS subject tokens and DNS labels. */
export const SERVICE_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Registry actions a workload (or meshctl, or any NATS client) may publish. */
export const REGISTRY_ACTIONS = ['register', 'deregister', 'heartbeat', 'endpoint.add', 'endpoint.remove'] as const;
export type RegistryAction = (typeof REGISTRY_ACTIONS)[number];

/** Throws when `token` cannot be one subject token (no dots, spaces or wildcards). */
export function assertSubjectToken(token: string, what = 'service name'): string {
  if (!SERVICE_NAME_PATTERN.test(token)) {
    throw new TypeError(
      `${what} "${token}" is not valid: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
    );
  }
  return token;
}

export const subjects = {
  /** `mesh.v1.registry.<service>.<action>`: JetStream, deduplicated by `Nats-Msg-Id`. */
  registry: (service: string, action: RegistryAction): string => `${SUBJECT_ROOT}.registry.${assertSubjectToken(service)}.${action}`,
  /** Every registry subject, for stream and consumer filters. */
  registryAll: `${SUBJECT_ROOT}.registry.>`,
  /** `mesh.v1.discovery.endpoints.<service>`: JetStream, last value per subject. */
  endpoints: (service: string): string => `${SUBJECT_ROOT}.discovery.endpoints.${assertSubjectToken(service)}`,
  endpointsAll: `${SUBJECT_ROOT}.discovery.endpoints.>`,
  /**
   * Every service's endpoint-set subject and nothing deeper: what readers of MESH_ENDPOINTS filter
   * on (its stream subjects end in `>`, so `…endpoints.backup.orders` would be stored too, and is no
   * service's set).
   */
  endpointsEach: `${SUBJECT_ROOT}.discovery.endpoints.*`,
  /** Request/reply: query the registry (one service, all, or by labels). */
  discoveryQuery: `${SUBJECT_ROOT}.discovery.query`,
  /** `mesh.v1.deadletter.<source>.<service|_>`: rejected events with the reason. */
  deadLetter: (source: string, service?: string): string =>
    `${SUBJECT_ROOT}.deadletter.${source}.${service && SERVICE_NAME_PATTERN.test(service) ? service : '_'}`,
  deadLetterAll: `${SUBJECT_ROOT}.deadletter.>`,
  /**
   * Policy commands, core NATS request/reply answered by one policy replica (queue group):
   * `mesh.v1.policy.{apply,delete,get,list,history,rollback,analyze}`. The policy KV bucket is
   * the durable record; a command that got no reply may be retried (applies are idempotent).
   */
  policy: (command: PolicyCommand): string => `${SUBJECT_ROOT}.policy.${command}`,
  policyAll: `${SUBJECT_ROOT}.policy.*`,
  /** `mesh.v1.config.policy.<service>`: effective policy of one service, last value per subject. */
  effectivePolicy: (service: string): string => `${SUBJECT_ROOT}.config.policy.${assertSubjectToken(service)}`,
  effectivePolicyAll: `${SUBJECT_ROOT}.config.policy.>`,
  /** Every service's effective-policy subject and nothing deeper: what readers of MESH_CONFIG filter on. */
  effectivePolicyEach: `${SUBJECT_ROOT}.config.policy.*`,
  /**
   * Certificate authority commands, core NATS request/reply answered by one CA replica (queue
   * group): `mesh.v1.ca.{sign,token.create,revoke,certs.list,info,rotate}` (`info`: the root and
   * intermediate of the answering replica, public facts only; `rotate`: root rotation, phases
   * begin/status/finish). Deliberately outside the MESH_CA
   * stream's subjects, so JetStream never acknowledges a request in the CA's place.
   */
  ca: (command: CaCommand): string => `${SUBJECT_ROOT}.ca.${command}`,
  /** `mesh.v1.ca.bundle`: the trust bundle (roots workloads accept), last value in MESH_CA. */
  caBundle: `${SUBJECT_ROOT}.ca.bundle`,
  /** `mesh.v1.ca.revoked`: the revocation list (serials), last value in MESH_CA. */
  caRevoked: `${SUBJECT_ROOT}.ca.revoked`,
  /** `mesh.v1.config.proxy.<service>`: the proxy snapshot of one service, last value per subject in MESH_PROXY. */
  proxyConfig: (service: string): string => `${SUBJECT_ROOT}.config.proxy.${assertSubjectToken(service)}`,
  proxyConfigAll: `${SUBJECT_ROOT}.config.proxy.>`,
  /** Every service's snapshot subject and nothing deeper: what readers of MESH_PROXY filter on. */
  proxyConfigEach: `${SUBJECT_ROOT}.config.proxy.*`,
  /** `mesh.v1.proxy.ack.<service>.<sidecar>`: core NATS, a sidecar's applied/refused snapshot version. */
  proxyAck: (service: string, sidecar: string): string => `${SUBJECT_ROOT}.proxy.ack.${assertSubjectToken(service)}.${sidecar}`,
  proxyAckAll: `${SUBJECT_ROOT}.proxy.ack.>`,
  /** Request/reply answered by one proxy-config replica: every sidecar with its version and lag. */
  proxyStatus: `${SUBJECT_ROOT}.proxy.status`,
} as const;

export const CA_COMMANDS = ['sign', 'token.create', 'revoke', 'certs.list', 'info', 'rotate'] as const;
export type CaCommand = (typeof CA_COMMANDS)[number];

export const POLICY_COMMANDS = ['apply', 'delete', 'get', 'list', 'history', 'rollback', 'analyze'] as const;
export type PolicyCommand = (typeof POLICY_COMMANDS)[number];

/** The last token of a subject: the service of a per-service subject (`mesh.v1.config.policy.cart` → `cart`). */
export function lastToken(subject: string): string {
  return subject.slice(subject.lastIndexOf('.') + 1);
}

/** Parses a registry subject back into its parts, or returns undefined when it is not one. */
export function parseRegistrySubject(subject: string): { service: string; action: RegistryAction } | undefined {
  const prefix = `${SUBJECT_ROOT}.registry.`;
  if (!subject.startsWith(prefix)) return undefined;
  const rest = subject.slice(prefix.length);
  const dot = rest.indexOf('.');
  if (dot <= 0) return undefined;
  const service = rest.slice(0, dot);
  const action = rest.slice(dot + 1) as RegistryAction;
  if (!REGISTRY_ACTIONS.includes(action)) return undefined;
  return { service, action };
}

export const streams = {
  /** Registry commands; a work queue shared by every discovery replica. */
  registry: 'MESH_REGISTRY',
  /** Endpoint sets, one retained message per service; rebuildable from the KV bucket. */
  endpoints: 'MESH_ENDPOINTS',
  /** Rejected events with their reasons, kept for a week. */
  deadLetter: 'MESH_DEADLETTER',
  /** Effective policy per service, last value per subject. */
  config: 'MESH_CONFIG',
  /** Trust bundle and revocation list of the certificate authority, last value per subject. */
  ca: 'MESH_CA',
  /** Proxy snapshots, one retained message per service; rebuildable by proxy-config. */
  proxy: 'MESH_PROXY',
} as const;

export const consumers = {
  /** The one durable consumer all discovery replicas pull from: each event is processed once. */
  discoveryRegistry: 'discovery-registry',
} as const;

export const buckets = {
  /** Service registry, key = service name, value = `ServiceRecord` (owned by discovery). */
  services: 'mesh_services',
  /** Policies, key = `<kind>.<name>`, value = the validated policy; history keeps the last 20 revisions. */
  policies: 'mesh_policies',
  /**
   * Join tokens, key = SHA-256 (hex) of the token, value = `CaTokenRecordV1` (service, namespace,
   * expiry, uses left). The token itself is never stored. Owned by the certificate authority.
   */
  caTokens: 'mesh_ca_tokens',
  /**
   * Issued workload certificates, key = serial (hex), value = `CaCertRecordV1`; plus the key
   * `root-rotation-lock` (who began the root rotation in progress). Owned by the certificate authority.
   */
  caCerts: 'mesh_ca_certs',
} as const;

export const queueGroups = {
  discovery: 'discovery',
  policy: 'policy',
  certificateAuthority: 'certificate-authority',
  proxyConfig: 'proxy-config',
} as const;

/** NATS header names Novamesh sets or reads. */
export const headers = {
  msgId: 'Nats-Msg-Id',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  error: 'Mesh-Error',
} as const;

/** Largest registry event accepted, before JSON parsing (bytes). */
export const MAX_EVENT_BYTES = 256 * 1024;
