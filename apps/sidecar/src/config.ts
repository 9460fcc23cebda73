import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommonConfig, ConfigError, EnvReader } from '@novamesh/config';
import {
  address as addressSchema,
  DEFAULT_NAMESPACE,
  LOCALITY_LABEL,
  NAMESPACE_LABEL,
  SERVICE_NAME_PATTERN,
  SIDECAR_LABEL,
} from '@novamesh/contracts';

export { ConfigError };

export type AccessLogMode = 'all' | 'errors' | 'off';

/** Everything one sidecar reads from its environment (meshctl sidecar sets it from flags), parsed once and frozen. */
/** The sidecar reads NATS_URL and LOG_LEVEL of the common settings; the control plane's others (NATS_REPLICAS, an instance id, OTLP) are not its own, so a value inherited from their environment cannot stop it. */
export interface SidecarConfig extends Pick<CommonConfig, 'natsUrl' | 'logLevel'> {
  service: string;
  namespace: string;
  /** `<service>-<host>-<pid>` unless SIDECAR_ID says otherwise; one NATS subject token. */
  sidecarId: string;
  /** Where the workload listens (plain HTTP on loopback). */
  appHost: string;
  appPort: number;
  /** Inbound listener (mTLS and/or plain per policy); other sidecars call it. 0 = any free port. */
  inboundPort: number;
  /** Outbound listener for the app: `http://<service>.mesh/...` through it (as an HTTP proxy or by Host). */
  outboundPort: number;
  adminPort: number;
  /** Address other sidecars reach this one at (registered with discovery). */
  address: string;
  /** Bind address of the inbound listener. */
  bindHost: string;
  /** Extra local listeners, one per upstream: `orders=9001` → 127.0.0.1:9001 goes to orders. */
  upstreamPorts: Record<string, number>;
  /** Declared upstreams (registered with the service), or undefined for every service. */
  upstreams?: string[];
  /** Register this workload with discovery (service + endpoint); off when something else registers it. */
  register: boolean;
  /** Service type and port to register the service with when it is not registered yet. */
  serviceType: 'http' | 'grpc';
  servicePort: number;
  weight: number;
  zone?: string;
  labels: Record<string, string>;
  /** Join token for the first certificate; without one the sidecar speaks plaintext only. */
  joinToken?: string;
  /** Last good snapshot and certificate, so a restart works while the control plane is down. */
  dataDir: string;
  /** SIDECAR_DATA_DIR was set (the operator chose the directory); else the default under $TMPDIR. */
  dataDirSet: boolean;
  accessLog: AccessLogMode;
  /** How long SIGTERM waits for in-flight requests after deregistering. */
  drainMs: number;
  /** Acknowledgement heartbeat period. */
  ackIntervalMs: number;
  /** How often the stored snapshot is read back from MESH_PROXY besides the live subscription. */
  snapshotReconcileMs: number;
  /** Heartbeat TTL of a service this sidecar registers; it heartbeats its endpoint every third of it. */
  heartbeatTtlMs: number;
  /** After a root rotation begins, re-issue under the new root within this long (jittered; at least half of it, at most 5 s, first). */
  newRootRenewMaxMs: number;
  /** Redis for global rate limits; connected only when a snapshot has a global limit. */
  redisUrl: string;
  /** How long a global rate-limit decision waits for Redis before it fails (open or closed, as the limit says). */
  rateLimitTimeoutMs: number;
  /** Requests (inbound and outbound together) this sidecar handles at once; beyond it: fast 503 OVERLOADED. */
  maxInFlight: number;
  /** Plain HTTP/1.1 outbound requests go over raw pooled sockets (fast-path.ts) instead of node:http and undici. */
  fastPath: boolean;
  /** With fastPath: plain HTTP/1.1 inbound requests (also over mTLS) go to the workload over raw pooled sockets (inbound.ts). */
  inboundFastPath: boolean;
  /**
   * An HTTP/1.1 request head (inbound and outbound, fast path and node:http) must arrive whole within
   * this long from its first byte, else 408 and the connection closes (Envoy's request_headers_timeout).
   */
  headersTimeoutMs: number;
  /**
   * A connection must show what it speaks (the first bytes the listener sniffs: TLS, the HTTP/2
   * preface or HTTP/1.x) within this long from its accept, else it is closed (Envoy's
   * listener_filters_timeout): one that sends nothing, or stops inside the preface, holds no socket forever.
   */
  listenerFiltersTimeoutMs: number;
  /**
   * A client connection with nothing in progress is closed after this long (Envoy's idle_timeout),
   * inbound and outbound: an HTTP/1.1 keep-alive connection idle between requests (advertised in
   * its `Keep-Alive: timeout=` header), an HTTP/2 session without an open stream (gracefully:
   * GOAWAY, then close). A stream, however quiet, keeps its session.
   */
  idleTimeoutMs: number;
  /** A WebSocket tunnel that carried no byte either way this long is closed, inbound and outbound. */
  tunnelIdleTimeoutMs: number;
}

/** Upper bound of the timeouts a timer enforces per connection: well inside what a Node.js timer can hold (about 24.8 days). */
const MAX_TIMEOUT_MS = 24 * 3_600_000;

/** A positive duration of at most 24h (a longer one would not fit a timer, which then fires at once). */
function timeoutOf(r: EnvReader, key: string, fallback: string): number {
  const ms = r.duration(key, fallback);
  if (ms > MAX_TIMEOUT_MS) r.problem(`${key}="${r.raw(key)}" must be at most 24h`);
  return ms;
}

function keyValues(r: EnvReader, key: string, check: (k: string, v: string) => string | undefined): Record<string, string> {
  const raw = r.raw(key);
  const out: Record<string, string> = {};
  if (!raw) return out;
  for (const part of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    const problem = eq <= 0 ? 'is not key=value' : check(k, v);
    if (problem) r.problem(`${key}: "${part}" ${problem}`);
    else out[k] = v;
  }
  return out;
}

function serviceNameOf(r: EnvReader, key: string, value: string | undefined): string {
  if (value === undefined) r.problem(`${key} is required (the service this sidecar serves)`);
  else if (!SERVICE_NAME_PATTERN.test(value)) r.problem(`${key}="${value}" must be a service name (lowercase letters, digits, '-')`);
  return value ?? '';
}

/** Endpoint labels the sidecar sets itself, with what sets them instead (a value in SIDECAR_LABELS would be overwritten). */
export const RESERVED_LABELS: Readonly<Record<string, string>> = {
  [SIDECAR_LABEL]: 'is set by the sidecar itself (to SIDECAR_ID)',
  [NAMESPACE_LABEL]: 'is set by the sidecar itself (use SIDECAR_NAMESPACE)',
};

/** SIDECAR_ADDRESS: the address other sidecars call, registered as the endpoint's (checked as discovery checks it). */
function advertised(r: EnvReader): string {
  const value = r.string('SIDECAR_ADDRESS', '127.0.0.1');
  const parsed = addressSchema.safeParse(value);
  if (!parsed.success) r.problem(`SIDECAR_ADDRESS="${value}": ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return value;
}

/** Two listen addresses that take the same port from each other: the same host, or a wildcard on either side. */
function sameAddress(a: string, b: string): boolean {
  const norm = (h: string) => (h === 'localhost' ? '127.0.0.1' : h.replace(/^\[|\]$/g, ''));
  const [x, y] = [norm(a), norm(b)];
  return x === y || ['0.0.0.0', '::'].includes(x) || ['0.0.0.0', '::'].includes(y);
}

/** Each listener needs a port of its own on its address (0: any free one): a clash is a problem naming both variables. */
function samePortProblems(r: EnvReader, listeners: [name: string, host: string, port: number][]): void {
  listeners.forEach(([name, host, port], i) => {
    if (!port) return;
    const other = listeners.slice(0, i).find(([, h, p]) => p === port && sameAddress(h, host));
    if (other)
      r.problem(
        `${other[0]} and ${name} are both ${port} on ${host}: each listener needs a port of its own (defaults: outbound 15001, admin 15000)`,
      );
  });
}

/** Parses the environment; throws one error naming every bad key. Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<SidecarConfig> {
  const r = new EnvReader(env);
  const common = { natsUrl: r.natsUrls(), logLevel: r.logLevel() };
  const service = serviceNameOf(r, 'SIDECAR_SERVICE', r.raw('SIDECAR_SERVICE'));
  const appPort = r.int('SIDECAR_APP_PORT', 0, 1, 65535);
  if (r.raw('SIDECAR_APP_PORT') === undefined) r.problem('SIDECAR_APP_PORT is required (the port the workload listens on)');
  const sidecarId = r.string('SIDECAR_ID', `${service}-${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 128));
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(sidecarId)) r.problem(`SIDECAR_ID="${sidecarId}" must be 1-128 letters, digits, '_' or '-'`);
  const upstreamPorts = Object.fromEntries(
    Object.entries(
      keyValues(r, 'SIDECAR_UPSTREAM_PORTS', (k, v) => {
        if (!SERVICE_NAME_PATTERN.test(k)) return 'does not name a service';
        const n = Number(v);
        return Number.isInteger(n) && n >= 1 && n <= 65535 ? undefined : 'needs a port from 1 to 65535';
      }),
    ).map(([k, v]) => [k, Number(v)]),
  );
  const upstreamsRaw = r.raw('SIDECAR_UPSTREAMS');
  const upstreams = upstreamsRaw
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const u of upstreams ?? []) if (!SERVICE_NAME_PATTERN.test(u)) r.problem(`SIDECAR_UPSTREAMS: "${u}" is not a service name`);
  const accessLog = r.string('SIDECAR_ACCESS_LOG', 'errors') as AccessLogMode;
  if (!['all', 'errors', 'off'].includes(accessLog)) r.problem(`SIDECAR_ACCESS_LOG="${accessLog}" must be all, errors or off`);
  const serviceType = r.string('SIDECAR_SERVICE_TYPE', 'http') as 'http' | 'grpc';
  if (!['http', 'grpc'].includes(serviceType)) r.problem(`SIDECAR_SERVICE_TYPE="${serviceType}" must be http or grpc`);
  const namespace = r.string('SIDECAR_NAMESPACE', DEFAULT_NAMESPACE);
  if (!SERVICE_NAME_PATTERN.test(namespace)) r.problem(`SIDECAR_NAMESPACE="${namespace}" must be a DNS label`);
  const register = r.string('SIDECAR_REGISTER', 'true');
  if (!['true', 'false'].includes(register)) r.problem(`SIDECAR_REGISTER="${register}" must be true or false`);
  const zone = r.raw('SIDECAR_ZONE');
  const fastPath = r.string('SIDECAR_FAST_PATH', 'true');
  if (!['true', 'false'].includes(fastPath)) r.problem(`SIDECAR_FAST_PATH="${fastPath}" must be true or false`);
  const inboundFastPath = r.string('SIDECAR_INBOUND_FAST_PATH', 'true');
  if (!['true', 'false'].includes(inboundFastPath)) r.problem(`SIDECAR_INBOUND_FAST_PATH="${inboundFastPath}" must be true or false`);
  const appHost = r.string('SIDECAR_APP_HOST', '127.0.0.1');
  const inboundPort = r.int('SIDECAR_INBOUND_PORT', 0, 0, 65535);
  const outboundPort = r.int('SIDECAR_OUTBOUND_PORT', 15001, 0, 65535);
  const adminPort = r.int('SIDECAR_ADMIN_PORT', 15000, 0, 65535);
  const bindHost = r.string('SIDECAR_BIND_HOST', '127.0.0.1');
  // Where each listens: inbound on SIDECAR_BIND_HOST, the outbound, admin and upstream ports on
  // 127.0.0.1 (main.ts), the workload on SIDECAR_APP_HOST.
  samePortProblems(r, [
    ['SIDECAR_INBOUND_PORT', bindHost, inboundPort],
    ['SIDECAR_OUTBOUND_PORT', '127.0.0.1', outboundPort],
    ['SIDECAR_ADMIN_PORT', '127.0.0.1', adminPort],
    ...Object.entries(upstreamPorts).map(([s, p]): [string, string, number] => [`SIDECAR_UPSTREAM_PORTS (${s})`, '127.0.0.1', p]),
    ['SIDECAR_APP_PORT', appHost, appPort],
  ]);
  return r.done({
    ...common,
    service,
    namespace,
    sidecarId,
    appHost,
    appPort,
    inboundPort,
    outboundPort,
    adminPort,
    address: advertised(r),
    bindHost,
    upstreamPorts,
    ...(upstreams ? { upstreams } : {}),
    register: register === 'true',
    serviceType,
    servicePort: r.int('SIDECAR_SERVICE_PORT', 80, 1, 65535),
    weight: r.int('SIDECAR_WEIGHT', 1, 0, 10_000),
    ...(zone ? { zone } : {}),
    labels: keyValues(
      r,
      'SIDECAR_LABELS',
      (k) =>
        RESERVED_LABELS[k] ??
        // The zone label is the sidecar's only when SIDECAR_ZONE is set; without it a label may carry the zone.
        (k === LOCALITY_LABEL && zone ? 'is set by the sidecar itself (from SIDECAR_ZONE, which is set)' : undefined) ??
        (/^[a-zA-Z0-9]([a-zA-Z0-9_./-]{0,61}[a-zA-Z0-9])?$/.test(k) ? undefined : 'has a bad label key'),
    ),
    ...(r.raw('SIDECAR_JOIN_TOKEN') ? { joinToken: r.raw('SIDECAR_JOIN_TOKEN') } : {}),
    // Per service and app port, not per sidecar id (its default has the pid): a restarted sidecar
    // finds the snapshot and certificate its previous process saved.
    dataDir: r.string('SIDECAR_DATA_DIR', join(tmpdir(), `novamesh-sidecar-${process.getuid?.() ?? 'user'}`, `${service}-${appPort}`)),
    dataDirSet: r.raw('SIDECAR_DATA_DIR') !== undefined,
    accessLog,
    drainMs: r.duration('SIDECAR_DRAIN', '2s'),
    ackIntervalMs: r.duration('SIDECAR_ACK_INTERVAL', '10s'),
    snapshotReconcileMs: r.duration('SIDECAR_SNAPSHOT_RECONCILE', '30s'),
    heartbeatTtlMs: r.duration('SIDECAR_HEARTBEAT_TTL', '10s'),
    newRootRenewMaxMs: r.duration('SIDECAR_NEW_ROOT_RENEW_MAX', '60s'),
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    rateLimitTimeoutMs: r.duration('SIDECAR_RATE_LIMIT_TIMEOUT', '100ms'),
    maxInFlight: r.int('SIDECAR_MAX_IN_FLIGHT', 10_000, 1, 1_000_000),
    fastPath: fastPath === 'true',
    inboundFastPath: fastPath === 'true' && inboundFastPath === 'true',
    headersTimeoutMs: timeoutOf(r, 'SIDECAR_HEADERS_TIMEOUT', '60s'),
    listenerFiltersTimeoutMs: timeoutOf(r, 'SIDECAR_LISTENER_FILTERS_TIMEOUT', '15s'),
    // 65 s: the HTTP/1.1 keep-alive the listeners always had.
    idleTimeoutMs: timeoutOf(r, 'SIDECAR_IDLE_TIMEOUT', '65s'),
    // 1h: Istio's idle timeout for upgraded (WebSocket) connections.
    tunnelIdleTimeoutMs: timeoutOf(r, 'SIDECAR_TUNNEL_IDLE_TIMEOUT', '1h'),
  });
}
