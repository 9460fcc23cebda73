import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, consumers, MAX_JOIN_TOKEN_TTL_MS, streams, subjects } from '@novamesh/contracts';

const NS_PER_MS = 1_000_000;
const STREAM_NOT_FOUND = 10059;
/** A stream of that name exists with another configuration. */
const STREAM_NAME_IN_USE = 10058;
const CONSUMER_NOT_FOUND = 10014;

export interface TopologyOptions {
  /** Stream/KV replicas: 1 on one server, 3 on a 3-node cluster. */
  replicas?: number;
}

/**
 * A stream that keeps the last message of each subject (file storage, 2-minute duplicate window):
 * the shape of every "current value" the mesh publishes — endpoint sets, effective policies, the
 * trust bundle and revocations, proxy snapshots.
 */
function lastValueStream(name: string, streamSubjects: string[], opts: TopologyOptions): StreamConfig {
  return {
    name,
    subjects: streamSubjects,
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_msgs_per_subject: 1,
    duplicate_window: 120_000 * NS_PER_MS,
    num_replicas: opts.replicas ?? 1,
  } as StreamConfig;
}

/**
 * The streams of the mesh and why each has its storage:
 * - registry: commands that must not be lost → file, work queue (acked = done), deduplicated.
 * - endpoints: derived, last value per service → file so late subscribers survive a NATS
 *   restart, but discovery can rebuild it from the KV bucket.
 * - dead letters: a week of refusals for operators to inspect.
 */
export function meshStreams(opts: TopologyOptions = {}): StreamConfig[] {
  const num_replicas = opts.replicas ?? 1;
  return [
    {
      name: streams.registry,
      subjects: [subjects.registryAll],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      discard: DiscardPolicy.New,
      max_msgs: 5_000_000,
      duplicate_window: 120_000 * NS_PER_MS,
      num_replicas,
    } as StreamConfig,
    lastValueStream(streams.endpoints, [subjects.endpointsAll], opts),
    // Effective configuration per service: derived from the KV buckets, so rebuildable, but
    // kept on file so late subscribers (sidecars) get the current value after a NATS restart.
    lastValueStream(streams.config, [subjects.effectivePolicyAll], opts),
    {
      name: streams.deadLetter,
      subjects: [subjects.deadLetterAll],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: 7 * 24 * 3_600_000 * NS_PER_MS,
      max_msgs: 100_000,
      num_replicas,
    } as StreamConfig,
  ];
}

/** Bounded redelivery: after this many deliveries an event is dead-lettered. */
export const REGISTRY_MAX_DELIVER = 5;

export function registryConsumer(): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: consumers.discoveryRegistry,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: subjects.registryAll,
    // Short, so events held by a replica that died are redelivered to the others within seconds;
    // handlers take milliseconds and are idempotent, so an occasional early redelivery is harmless.
    ack_wait: 5_000 * NS_PER_MS,
    max_deliver: REGISTRY_MAX_DELIVER,
    max_ack_pending: 2_000,
  };
}

function isCode(e: unknown, code: number): boolean {
  return e instanceof JetStreamApiError && e.code === code;
}

/** Creates the stream, or updates it to `cfg` when it exists; safe to run from every replica. */
export async function ensureStream(jsm: JetStreamManager, cfg: StreamConfig): Promise<void> {
  try {
    await jsm.streams.info(cfg.name);
  } catch (e) {
    if (!isCode(e, STREAM_NOT_FOUND)) throw e;
    try {
      await jsm.streams.add(cfg);
      return;
    } catch (addErr) {
      // Another replica created it between our info and add: fall through to update.
      await jsm.streams.info(cfg.name).catch(() => {
        throw addErr;
      });
    }
  }
  await jsm.streams.update(cfg.name, cfg);
}

/** Creates the durable consumer or updates its config; idempotent. */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  cfg: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  try {
    await jsm.consumers.info(stream, cfg.durable_name);
    const { deliver_policy: _d, filter_subject: _f, ...updatable } = cfg;
    await jsm.consumers.update(stream, cfg.durable_name, updatable);
  } catch (e) {
    if (!isCode(e, CONSUMER_NOT_FOUND)) throw e;
    await jsm.consumers.add(stream, cfg);
  }
}

/** Opens (creating when missing) a KV bucket on file storage, keeping `history` revisions per key. */
export async function ensureKv(nc: NatsConnection, bucket: string, opts: TopologyOptions & { history?: number } = {}): Promise<KV> {
  return new Kvm(nc).create(bucket, { history: opts.history ?? 1, replicas: opts.replicas ?? 1, storage: StorageType.File });
}

/** Revisions kept per policy (`meshctl history` / `rollback`). */
export const POLICY_HISTORY = 20;

/** Provisions what the policy service needs: the mesh streams and the policies bucket. Idempotent. */
export async function provisionPolicy(nc: NatsConnection, opts: TopologyOptions = {}): Promise<{ jsm: JetStreamManager; kv: KV }> {
  const jsm = await jetstreamManager(nc);
  for (const s of meshStreams(opts)) await ensureStream(jsm, s);
  const kv = await ensureKv(nc, buckets.policies, { ...opts, history: POLICY_HISTORY });
  return { jsm, kv };
}

/**
 * Provisions everything discovery needs: the three streams, the shared registry consumer and
 * the services bucket. Running it again (another replica, a restart) changes nothing.
 */
export async function provisionDiscovery(nc: NatsConnection, opts: TopologyOptions = {}): Promise<{ jsm: JetStreamManager; kv: KV }> {
  const jsm = await jetstreamManager(nc);
  for (const s of meshStreams(opts)) await ensureStream(jsm, s);
  await ensureConsumer(jsm, streams.registry, registryConsumer());
  const kv = await ensureKv(nc, buckets.services, opts);
  return { jsm, kv };
}

/**
 * The certificate authority's stream: the trust bundle and the revocation list, one retained
 * message per subject. File storage: sidecars that start while the CA is down must still find the
 * current bundle and revocations (static stability). Request subjects (`mesh.v1.ca.sign`, …) are
 * deliberately not captured, so JetStream never answers a request in the CA's place.
 */
export function caStream(opts: TopologyOptions = {}): StreamConfig {
  return lastValueStream(streams.ca, [subjects.caBundle, subjects.caRevoked], opts);
}

/** How long the token bucket keeps an entry after its last write: past the longest token lifetime, then it is gone. */
export const CA_TOKENS_TTL_MS = MAX_JOIN_TOKEN_TTL_MS + 24 * 3_600_000;

/**
 * Provisions what the certificate authority needs: the mesh streams (so SDK clients find the
 * registry stream), the MESH_CA stream, the join-token bucket (entries expire on their own after
 * {@link CA_TOKENS_TTL_MS}) and the issued-certificates bucket. Idempotent; safe from every replica.
 */
export async function provisionCa(
  nc: NatsConnection,
  opts: TopologyOptions = {},
): Promise<{ jsm: JetStreamManager; tokens: KV; certs: KV }> {
  const jsm = await jetstreamManager(nc);
  for (const s of meshStreams(opts)) await ensureStream(jsm, s);
  await ensureStream(jsm, caStream(opts));
  const kvm = new Kvm(nc);
  const tokens = await kvm.create(buckets.caTokens, {
    history: 1,
    replicas: opts.replicas ?? 1,
    storage: StorageType.File,
    ttl: CA_TOKENS_TTL_MS,
  });
  const certs = await ensureKv(nc, buckets.caCerts, opts);
  return { jsm, tokens, certs };
}

/**
 * Proxy snapshots, one retained message per service. File storage, so a sidecar that starts while
 * proxy-config is down still finds its service's current snapshot (static stability); proxy-config
 * rebuilds every snapshot from the endpoint and config streams, so nothing here is the only copy.
 */
export function proxyStream(opts: TopologyOptions = {}): StreamConfig {
  return lastValueStream(streams.proxy, [subjects.proxyConfigAll], opts);
}

/**
 * Provisions what proxy-config reads and writes: the mesh streams, MESH_CA (it follows the trust
 * bundle) and MESH_PROXY. Idempotent; safe from every replica.
 */
export async function provisionProxyConfig(nc: NatsConnection, opts: TopologyOptions = {}): Promise<{ jsm: JetStreamManager }> {
  const jsm = await jetstreamManager(nc);
  for (const s of meshStreams(opts)) await ensureStream(jsm, s);
  await ensureStream(jsm, caStream(opts));
  await ensureStream(jsm, proxyStream(opts));
  return { jsm };
}

/** Every stream of the mesh as provisioned: the registry, endpoints, config and dead-letter streams, MESH_CA and MESH_PROXY. */
export function allMeshStreams(opts: TopologyOptions = {}): StreamConfig[] {
  return [...meshStreams(opts), caStream(opts), proxyStream(opts)];
}

/**
 * Creates stream `name` of the mesh with its provisioned configuration, for a stream found missing
 * (an operator deleted it, or nats-server lost it). Resolves true when this call created it (or
 * another replica did, with the same configuration, at the same moment), false when a stream of
 * that name exists with another configuration: someone created it meanwhile, and it is left as it
 * is (never updated, unlike `ensureStream`). Throws for a name that is not a stream of the mesh.
 */
export async function createMeshStream(jsm: JetStreamManager, name: string, opts: TopologyOptions = {}): Promise<boolean> {
  const cfg = allMeshStreams(opts).find((s) => s.name === name);
  if (!cfg) throw new Error(`${name} is not a stream of the mesh`);
  try {
    await jsm.streams.add(cfg);
    return true;
  } catch (e) {
    if (isCode(e, STREAM_NAME_IN_USE)) return false;
    throw e;
  }
}
