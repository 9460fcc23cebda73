import { type CommonConfig, ConfigError, EnvReader } from '@novamesh/config';

export { ConfigError };

/** Everything discovery reads from its environment, parsed once and frozen. */
export interface DiscoveryConfig extends CommonConfig {
  redisUrl: string;
  /** How often time-driven changes (TTL, drains) are evaluated. */
  sweepIntervalMs: number;
  /** How often each replica checks that the stream holds every set it owns (repairs lost publishes). */
  reconcileIntervalMs: number;
  /** How often the endpoints stream is checked for having been deleted and created again (its sets then get republished). */
  streamRecheckMs: number;
  /** A replica silent for this long is considered gone; its checks move to others. */
  memberTtlMs: number;
  /** Registry events processed at once by one replica. */
  maxInFlight: number;
}

/** Parses the environment; throws one error naming every bad key. Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<DiscoveryConfig> {
  const r = new EnvReader(env);
  return r.done({
    ...r.common('DISCOVERY_INSTANCE'),
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    sweepIntervalMs: r.duration('DISCOVERY_SWEEP_INTERVAL', '1s'),
    reconcileIntervalMs: r.duration('DISCOVERY_RECONCILE_INTERVAL', '30s'),
    streamRecheckMs: r.duration('DISCOVERY_STREAM_RECHECK', '10s'),
    memberTtlMs: r.duration('DISCOVERY_MEMBER_TTL', '3s'),
    maxInFlight: r.int('DISCOVERY_MAX_IN_FLIGHT', 64, 1, 4096),
  });
}
