import { ErrorCode } from './errors';
import type { ServiceInput } from './service.schema';

/** A realistic registration used by tests and benchmarks. */
export function validService(name = 'payment') {
  return {
    name,
    type: 'http' as const,
    port: 8080,
    endpoints: [
      { id: `${name}-1`, address: '10.0.0.11', port: 9101, weight: 1, labels: { version: 'v1', zone: 'a' } },
      { id: `${name}-2`, address: '10.0.0.12', port: 9102, weight: 1, labels: { version: 'v2', zone: 'b' } },
    ],
    settings: { owner: 'payments-team' },
    healthCheck: { protocol: 'http' as const, path: '/healthz', interval: '5s', timeout: '1s' },
  } satisfies ServiceInput;
}

export interface MalformedCase {
  name: string;
  subject: string;
  payload: unknown;
  code: string;
  /** An issue path the refusal must name. */
  path?: string;
  message?: RegExp;
}

const reg = 'mesh.v1.registry.payment.register';
const svc = validService;
const ep = (over: Record<string, unknown>) => ({ ...svc(), endpoints: [{ id: 'e1', address: '10.0.0.1', port: 80, ...over }] });

/**
 * Malformed registry events, each with the refusal a user must see. Shared by the unit test of
 * validation and the end-to-end test that publishes them to a running discovery.
 */
export const MALFORMED_REGISTRY_EVENTS: MalformedCase[] = [
  { name: 'bad JSON', subject: reg, payload: '{"name": "payment",', code: ErrorCode.badJson, message: /not valid JSON/ },
  { name: 'empty payload', subject: reg, payload: '', code: ErrorCode.badJson },
  { name: 'a JSON array', subject: reg, payload: [1, 2], code: ErrorCode.invalid, path: '' },
  { name: 'invalid UTF-8', subject: reg, payload: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), code: ErrorCode.badJson },
  { name: 'missing name', subject: reg, payload: { ...svc(), name: undefined }, code: ErrorCode.invalid, path: 'name' },
  {
    name: 'uppercase name',
    subject: 'mesh.v1.registry.payment.register',
    payload: { ...svc(), name: 'Payment' },
    code: ErrorCode.invalid,
    path: 'name',
  },
  { name: 'port 0', subject: reg, payload: { ...svc(), port: 0 }, code: ErrorCode.invalid, path: 'port' },
  { name: 'port 70000', subject: reg, payload: { ...svc(), port: 70000 }, code: ErrorCode.invalid, path: 'port' },
  { name: 'port as a string', subject: reg, payload: { ...svc(), port: '8080' }, code: ErrorCode.invalid, path: 'port' },
  { name: 'fractional port', subject: reg, payload: { ...svc(), port: 80.5 }, code: ErrorCode.invalid, path: 'port' },
  { name: 'unknown type', subject: reg, payload: { ...svc(), type: 'udp' }, code: ErrorCode.invalid, path: 'type' },
  { name: 'negative weight', subject: reg, payload: ep({ weight: -1 }), code: ErrorCode.invalid, path: 'endpoints[0].weight' },
  { name: 'invalid address', subject: reg, payload: ep({ address: '999.1.1.1' }), code: ErrorCode.invalid, path: 'endpoints[0].address' },
  {
    name: 'address with a space',
    subject: reg,
    payload: ep({ address: 'my host' }),
    code: ErrorCode.invalid,
    path: 'endpoints[0].address',
  },
  {
    name: 'unspecified address (0.0.0.0)',
    subject: reg,
    payload: ep({ address: '0.0.0.0' }),
    code: ErrorCode.invalid,
    path: 'endpoints[0].address',
  },
  { name: 'unspecified address (::)', subject: reg, payload: ep({ address: '::' }), code: ErrorCode.invalid, path: 'endpoints[0].address' },
  {
    name: 'broadcast address',
    subject: reg,
    payload: ep({ address: '255.255.255.255' }),
    code: ErrorCode.invalid,
    path: 'endpoints[0].address',
  },
  { name: 'multicast address', subject: reg, payload: ep({ address: '224.0.0.1' }), code: ErrorCode.invalid, path: 'endpoints[0].address' },
  { name: 'endpoint port 70000', subject: reg, payload: ep({ port: 70000 }), code: ErrorCode.invalid, path: 'endpoints[0].port' },
  { name: 'endpoint without id', subject: reg, payload: ep({ id: undefined }), code: ErrorCode.invalid, path: 'endpoints[0].id' },
  {
    name: 'duplicate endpoint ids',
    subject: reg,
    payload: { ...svc(), endpoints: [svc().endpoints[0], svc().endpoints[0]] },
    code: ErrorCode.invalid,
    path: 'endpoints[1].id',
  },
  {
    name: 'oversized label value',
    subject: reg,
    payload: ep({ labels: { version: 'v'.repeat(64) } }),
    code: ErrorCode.invalid,
    path: 'endpoints[0].labels.version',
  },
  {
    name: 'too many labels',
    subject: reg,
    payload: ep({ labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }),
    code: ErrorCode.invalid,
    path: 'endpoints[0].labels',
  },
  {
    name: 'label key with spaces',
    subject: reg,
    payload: ep({ labels: { 'my key': 'v' } }),
    code: ErrorCode.invalid,
    path: 'endpoints[0].labels["my key"]',
  },
  { name: 'invalid virtualIP', subject: reg, payload: { ...svc(), virtualIP: '10.0.0' }, code: ErrorCode.invalid, path: 'virtualIP' },
  { name: 'unknown field', subject: reg, payload: { ...svc(), prot: 80 }, code: ErrorCode.invalid, message: /prot/ },
  {
    name: 'health check timeout ≥ interval',
    subject: reg,
    payload: { ...svc(), healthCheck: { protocol: 'http', interval: '1s', timeout: '2s' } },
    code: ErrorCode.invalid,
    path: 'healthCheck.timeout',
  },
  { name: 'bad duration', subject: reg, payload: { ...svc(), heartbeat: { ttl: 'soon' } }, code: ErrorCode.invalid, path: 'heartbeat.ttl' },
  {
    name: 'subject/payload name mismatch',
    subject: 'mesh.v1.registry.orders.register',
    payload: svc('payment'),
    code: ErrorCode.subjectMismatch,
    path: 'name',
    message: /subject of "orders"/,
  },
  {
    name: 'heartbeat for another service',
    subject: 'mesh.v1.registry.payment.heartbeat',
    payload: { service: 'orders' },
    code: ErrorCode.subjectMismatch,
    path: 'service',
  },
  { name: 'unknown action', subject: 'mesh.v1.registry.payment.explode', payload: svc(), code: ErrorCode.unknownSubject },
  {
    name: 'huge payload (300 KiB)',
    subject: reg,
    payload: { ...svc(), settings: { blob: 'x'.repeat(300 * 1024) } },
    code: ErrorCode.tooLarge,
  },
  {
    name: 'too many endpoints',
    subject: reg,
    payload: { ...svc(), endpoints: Array.from({ length: 1001 }, (_, i) => ({ id: `e${i}`, address: '10.0.0.1', port: 80 })) },
    code: ErrorCode.invalid,
    path: 'endpoints',
  },
  {
    name: 'endpoint.add without endpoint',
    subject: 'mesh.v1.registry.payment.endpoint.add',
    payload: { service: 'payment' },
    code: ErrorCode.invalid,
    path: 'endpoint',
  },
];
