import { stringify } from 'yaml';
import { z } from 'zod';
import {
  CaCertRecordV1,
  CaCertsListRequestV1,
  CaInfoReplyV1,
  CaInfoRequestV1,
  CaRevokeRequestV1,
  CaRotateReplyV1,
  CaRotateRequestV1,
  CaSignReplyV1,
  CaSignRequestV1,
  CaTokenCreateRequestV1,
  RevocationListV1,
  TrustBundleV1,
} from './ca';
import {
  DeadLetterV1,
  DiscoveryQueryReplyV1,
  DiscoveryQueryV1,
  EndpointAddedV1,
  EndpointRemovedV1,
  EndpointSetV1,
  ErrorBodyV1,
  HeartbeatV1,
  ServiceDeregisteredV1,
  ServiceRegisteredV1,
} from './events';
import { SUBJECT_ROOT } from './names';
import {
  EffectivePolicyV1,
  PolicyAnalyzeRequestV1,
  PolicyApplyRequestV1,
  PolicyDeleteRequestV1,
  PolicyGetRequestV1,
  PolicyHistoryRequestV1,
  PolicyListRequestV1,
  PolicyRollbackRequestV1,
  PolicySchema,
} from './policy';
import { ProxyAckV1, ProxySnapshotV1, ProxyStatusReplyV1, ProxyStatusRequestV1 } from './proxy';

function schema(s: z.ZodType): unknown {
  const json = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}

const serviceParam = { service: { description: 'Service name (a DNS label: lowercase letters, digits, "-").' } };

/**
 * Builds the AsyncAPI 3 document of the public contract from the schemas themselves, so the
 * document cannot drift from what services validate. `docs/asyncapi.yaml` is its rendering.
 */
export function buildAsyncApi(): Record<string, unknown> {
  const messages = {
    ServiceRegisteredV1: { name: 'ServiceRegisteredV1', payload: schema(ServiceRegisteredV1) },
    ServiceDeregisteredV1: { name: 'ServiceDeregisteredV1', payload: schema(ServiceDeregisteredV1) },
    HeartbeatV1: { name: 'HeartbeatV1', payload: schema(HeartbeatV1) },
    EndpointAddedV1: { name: 'EndpointAddedV1', payload: schema(EndpointAddedV1) },
    EndpointRemovedV1: { name: 'EndpointRemovedV1', payload: schema(EndpointRemovedV1) },
    EndpointSetV1: { name: 'EndpointSetV1', payload: schema(EndpointSetV1) },
    DiscoveryQueryV1: { name: 'DiscoveryQueryV1', payload: schema(DiscoveryQueryV1) },
    DiscoveryQueryReplyV1: { name: 'DiscoveryQueryReplyV1', payload: schema(DiscoveryQueryReplyV1) },
    DeadLetterV1: { name: 'DeadLetterV1', payload: schema(DeadLetterV1) },
    Policy: { name: 'Policy', summary: 'Any policy document; `kind` selects the schema.', payload: schema(PolicySchema) },
    PolicyApplyRequestV1: { name: 'PolicyApplyRequestV1', payload: schema(PolicyApplyRequestV1) },
    PolicyDeleteRequestV1: { name: 'PolicyDeleteRequestV1', payload: schema(PolicyDeleteRequestV1) },
    PolicyGetRequestV1: { name: 'PolicyGetRequestV1', payload: schema(PolicyGetRequestV1) },
    PolicyListRequestV1: { name: 'PolicyListRequestV1', payload: schema(PolicyListRequestV1) },
    PolicyHistoryRequestV1: { name: 'PolicyHistoryRequestV1', payload: schema(PolicyHistoryRequestV1) },
    PolicyRollbackRequestV1: { name: 'PolicyRollbackRequestV1', payload: schema(PolicyRollbackRequestV1) },
    PolicyAnalyzeRequestV1: { name: 'PolicyAnalyzeRequestV1', payload: schema(PolicyAnalyzeRequestV1) },
    PolicyReplyV1: {
      name: 'PolicyReplyV1',
      summary: "`{ ok: true, ... }` with the command's result, or `{ ok: false, error: { code, message, issues[{path, message}] } }`.",
      payload: { type: 'object', properties: { ok: { type: 'boolean' }, error: schema(ErrorBodyV1) }, required: ['ok'] },
    },
    EffectivePolicyV1: { name: 'EffectivePolicyV1', payload: schema(EffectivePolicyV1) },
    CaSignRequestV1: {
      name: 'CaSignRequestV1',
      summary: 'A CSR with proof of identity: `proof.token`, or `proof.certificatePem` + `proof.signature` (renewal).',
      payload: schema(CaSignRequestV1),
    },
    CaSignReplyV1: { name: 'CaSignReplyV1', payload: schema(CaSignReplyV1) },
    CaTokenCreateRequestV1: { name: 'CaTokenCreateRequestV1', payload: schema(CaTokenCreateRequestV1) },
    CaRevokeRequestV1: { name: 'CaRevokeRequestV1', payload: schema(CaRevokeRequestV1) },
    CaCertsListRequestV1: { name: 'CaCertsListRequestV1', payload: schema(CaCertsListRequestV1) },
    CaReplyV1: {
      name: 'CaReplyV1',
      summary:
        "`{ ok: true, ... }` with the command's result (certs.list: `certs[]` of CaCertRecordV1 with state issued|revoked|expired), or `{ ok: false, error }`.",
      payload: {
        type: 'object',
        properties: { ok: { type: 'boolean' }, error: schema(ErrorBodyV1), certs: { type: 'array', items: schema(CaCertRecordV1) } },
        required: ['ok'],
      },
    },
    CaInfoRequestV1: { name: 'CaInfoRequestV1', payload: schema(CaInfoRequestV1) },
    CaRotateRequestV1: {
      name: 'CaRotateRequestV1',
      summary: 'Root rotation (operator): begin, status or finish.',
      payload: schema(CaRotateRequestV1),
    },
    CaRotateReplyV1: {
      name: 'CaRotateReplyV1',
      summary:
        'The rotation state after the phase: roots with their live certificates, or the refusal (MESH_CONFLICT on finish while old-root certificates are live).',
      payload: schema(CaRotateReplyV1),
    },
    CaInfoReplyV1: {
      name: 'CaInfoReplyV1',
      summary: "The answering replica's trust domain, root and intermediate (fingerprints, validity), or `{ ok: false, error }`.",
      payload: schema(CaInfoReplyV1),
    },
    TrustBundleV1: { name: 'TrustBundleV1', payload: schema(TrustBundleV1) },
    RevocationListV1: { name: 'RevocationListV1', payload: schema(RevocationListV1) },
    ProxySnapshotV1: { name: 'ProxySnapshotV1', payload: schema(ProxySnapshotV1) },
    ProxyAckV1: { name: 'ProxyAckV1', payload: schema(ProxyAckV1) },
    ProxyStatusRequestV1: { name: 'ProxyStatusRequestV1', payload: schema(ProxyStatusRequestV1) },
    ProxyStatusReplyV1: { name: 'ProxyStatusReplyV1', payload: schema(ProxyStatusReplyV1) },
  };
  const ref = (m: keyof typeof messages) => ({ $ref: `#/components/messages/${m}` });
  const registry = (action: string, m: keyof typeof messages, description: string) => ({
    address: `${SUBJECT_ROOT}.registry.{service}.${action}`,
    description: `${description} JetStream stream MESH_REGISTRY; set Nats-Msg-Id for deduplication. Refusals go to ${SUBJECT_ROOT}.deadletter.registry.{service}.`,
    parameters: serviceParam,
    messages: { [m]: ref(m) },
  });
  const channels = {
    register: registry('register', 'ServiceRegisteredV1', 'Register or replace a service and its endpoints.'),
    deregister: registry('deregister', 'ServiceDeregisteredV1', 'Drain, then remove a service.'),
    heartbeat: registry('heartbeat', 'HeartbeatV1', 'Keep endpoints of a service with heartbeat.ttl alive.'),
    endpointAdd: registry('endpoint.add', 'EndpointAddedV1', 'Add or replace one endpoint.'),
    endpointRemove: registry('endpoint.remove', 'EndpointRemovedV1', 'Drain, then remove one endpoint.'),
    endpoints: {
      address: `${SUBJECT_ROOT}.discovery.endpoints.{service}`,
      description: 'Endpoint set of a service with health; JetStream stream MESH_ENDPOINTS keeps the last message per subject.',
      parameters: serviceParam,
      messages: { EndpointSetV1: ref('EndpointSetV1') },
    },
    discoveryQuery: {
      address: `${SUBJECT_ROOT}.discovery.query`,
      description: 'Core NATS request/reply answered by a discovery replica.',
      messages: { DiscoveryQueryV1: ref('DiscoveryQueryV1') },
    },
    discoveryQueryReply: {
      address: null,
      description: 'Reply to a discovery query (the request inbox).',
      messages: { DiscoveryQueryReplyV1: ref('DiscoveryQueryReplyV1') },
    },
    ...Object.fromEntries(
      (['apply', 'delete', 'get', 'list', 'history', 'rollback', 'analyze'] as const).map((c) => {
        const msg = `Policy${c[0]?.toUpperCase()}${c.slice(1)}RequestV1` as keyof typeof messages;
        return [
          `policy${c[0]?.toUpperCase()}${c.slice(1)}`,
          {
            address: `${SUBJECT_ROOT}.policy.${c}`,
            description: `Policy command "${c}": core NATS request/reply answered by one policy replica (queue group "policy").`,
            messages: { [msg]: ref(msg) },
          },
        ];
      }),
    ),
    policyReply: {
      address: null,
      description: 'Reply to a policy command (the request inbox).',
      messages: { PolicyReplyV1: ref('PolicyReplyV1') },
    },
    effectivePolicy: {
      address: `${SUBJECT_ROOT}.config.policy.{service}`,
      description:
        'Effective policy of a service (every kind merged, mesh-wide included), published when it changes; JetStream stream MESH_CONFIG keeps the last message per subject.',
      parameters: serviceParam,
      messages: { EffectivePolicyV1: ref('EffectivePolicyV1') },
    },
    caSign: {
      address: `${SUBJECT_ROOT}.ca.sign`,
      description:
        'Certificate signing: core NATS request/reply answered by one certificate-authority replica (queue group "certificate-authority").',
      messages: { CaSignRequestV1: ref('CaSignRequestV1') },
    },
    caSignReply: {
      address: null,
      description: 'Reply to a signing request (the request inbox).',
      messages: { CaSignReplyV1: ref('CaSignReplyV1') },
    },
    ...Object.fromEntries(
      (
        [
          ['caTokenCreate', 'token.create', 'CaTokenCreateRequestV1', 'Create a join token (operator).'],
          ['caRevoke', 'revoke', 'CaRevokeRequestV1', 'Revoke an issued certificate (operator).'],
          ['caCertsList', 'certs.list', 'CaCertsListRequestV1', 'List issued certificates (operator).'],
        ] as const
      ).map(([key, command, msg, what]) => [
        key,
        {
          address: `${SUBJECT_ROOT}.ca.${command}`,
          description: `${what} Core NATS request/reply answered by one certificate-authority replica.`,
          messages: { [msg]: ref(msg) },
        },
      ]),
    ),
    caReply: {
      address: null,
      description: 'Reply to a CA operator command (the request inbox).',
      messages: { CaReplyV1: ref('CaReplyV1') },
    },
    caInfo: {
      address: `${SUBJECT_ROOT}.ca.info`,
      description:
        'The root and intermediate of the certificate authority (what `meshctl check` reads): core NATS request/reply answered by one certificate-authority replica.',
      messages: { CaInfoRequestV1: ref('CaInfoRequestV1') },
    },
    caInfoReply: {
      address: null,
      description: 'Reply to `mesh.v1.ca.info` (the request inbox).',
      messages: { CaInfoReplyV1: ref('CaInfoReplyV1') },
    },
    caRotate: {
      address: `${SUBJECT_ROOT}.ca.rotate`,
      description:
        'Root rotation (operator; phases begin, status, finish): core NATS request/reply answered by one certificate-authority replica. The other replicas follow the trust bundle and reload the CA directory when its roots change.',
      messages: { CaRotateRequestV1: ref('CaRotateRequestV1') },
    },
    caRotateReply: {
      address: null,
      description: 'Reply to `mesh.v1.ca.rotate` (the request inbox).',
      messages: { CaRotateReplyV1: ref('CaRotateReplyV1') },
    },
    caBundle: {
      address: `${SUBJECT_ROOT}.ca.bundle`,
      description: 'Trust bundle (the roots workloads accept); JetStream stream MESH_CA keeps the last message.',
      messages: { TrustBundleV1: ref('TrustBundleV1') },
    },
    caRevoked: {
      address: `${SUBJECT_ROOT}.ca.revoked`,
      description: 'Revocation list (serials of revoked certificates); JetStream stream MESH_CA keeps the last message.',
      messages: { RevocationListV1: ref('RevocationListV1') },
    },
    proxyConfig: {
      address: `${SUBJECT_ROOT}.config.proxy.{service}`,
      description:
        'Proxy snapshot of a service (listeners, routes, upstreams with endpoints, TLS and authorization), published by proxy-config only when its hash changes; JetStream stream MESH_PROXY keeps the last message per subject.',
      parameters: serviceParam,
      messages: { ProxySnapshotV1: ref('ProxySnapshotV1') },
    },
    proxyAck: {
      address: `${SUBJECT_ROOT}.proxy.ack.{service}.{sidecar}`,
      description: 'A sidecar reports the snapshot version it applied or refused (core NATS), on change and every 10 s.',
      parameters: { ...serviceParam, sidecar: { description: 'The sidecar id.' } },
      messages: { ProxyAckV1: ref('ProxyAckV1') },
    },
    proxyStatus: {
      address: `${SUBJECT_ROOT}.proxy.status`,
      description:
        'Every sidecar with its applied and latest version and lag (`meshctl proxy-status`): core NATS request/reply answered by one proxy-config replica.',
      messages: { ProxyStatusRequestV1: ref('ProxyStatusRequestV1') },
    },
    proxyStatusReply: {
      address: null,
      description: 'Reply to `mesh.v1.proxy.status` (the request inbox).',
      messages: { ProxyStatusReplyV1: ref('ProxyStatusReplyV1') },
    },
    deadLetter: {
      address: `${SUBJECT_ROOT}.deadletter.{source}.{service}`,
      description: 'Refused events with the reason; JetStream stream MESH_DEADLETTER, kept 7 days. {service} is "_" when unknown.',
      parameters: { source: { description: 'Who refused it, e.g. "registry".' }, ...serviceParam },
      messages: { DeadLetterV1: ref('DeadLetterV1') },
    },
  };
  const send = (ch: keyof typeof channels) => ({ action: 'send', channel: { $ref: `#/channels/${ch}` } });
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Novamesh control plane',
      version: '1.0.0',
      description:
        'Subjects and payloads of the Novamesh control plane. Generated from libs/contracts by `npm run asyncapi`; a test fails when this file is stale.',
    },
    defaultContentType: 'application/json',
    channels,
    operations: {
      registerService: send('register'),
      deregisterService: send('deregister'),
      heartbeat: send('heartbeat'),
      addEndpoint: send('endpointAdd'),
      removeEndpoint: send('endpointRemove'),
      watchEndpoints: { action: 'receive', channel: { $ref: '#/channels/endpoints' } },
      queryDiscovery: {
        action: 'send',
        channel: { $ref: '#/channels/discoveryQuery' },
        reply: { channel: { $ref: '#/channels/discoveryQueryReply' } },
      },
      watchDeadLetters: { action: 'receive', channel: { $ref: '#/channels/deadLetter' } },
      ...Object.fromEntries(
        ['Apply', 'Delete', 'Get', 'List', 'History', 'Rollback', 'Analyze'].map((c) => [
          `policy${c}`,
          { action: 'send', channel: { $ref: `#/channels/policy${c}` }, reply: { channel: { $ref: '#/channels/policyReply' } } },
        ]),
      ),
      watchEffectivePolicy: { action: 'receive', channel: { $ref: '#/channels/effectivePolicy' } },
      signCertificate: { action: 'send', channel: { $ref: '#/channels/caSign' }, reply: { channel: { $ref: '#/channels/caSignReply' } } },
      ...Object.fromEntries(
        ['caTokenCreate', 'caRevoke', 'caCertsList'].map((c) => [
          c,
          { action: 'send', channel: { $ref: `#/channels/${c}` }, reply: { channel: { $ref: '#/channels/caReply' } } },
        ]),
      ),
      caInfo: { action: 'send', channel: { $ref: '#/channels/caInfo' }, reply: { channel: { $ref: '#/channels/caInfoReply' } } },
      caRotate: { action: 'send', channel: { $ref: '#/channels/caRotate' }, reply: { channel: { $ref: '#/channels/caRotateReply' } } },
      watchTrustBundle: { action: 'receive', channel: { $ref: '#/channels/caBundle' } },
      watchRevocations: { action: 'receive', channel: { $ref: '#/channels/caRevoked' } },
      watchProxyConfig: { action: 'receive', channel: { $ref: '#/channels/proxyConfig' } },
      acknowledgeProxyConfig: send('proxyAck'),
      proxyStatus: {
        action: 'send',
        channel: { $ref: '#/channels/proxyStatus' },
        reply: { channel: { $ref: '#/channels/proxyStatusReply' } },
      },
    },
    components: { messages },
  };
}

/** The YAML text of `docs/asyncapi.yaml`. */
export function renderAsyncApiYaml(): string {
  return `# Generated by \`npm run asyncapi\` from libs/contracts. Do not edit.\n${stringify(buildAsyncApi(), { lineWidth: 0, aliasDuplicateObjects: false })}`;
}
