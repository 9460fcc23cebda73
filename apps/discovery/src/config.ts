import { hostname } from 'node:os';
import { parseDuration } from '@novamesh/contracts';

/** Everything discovery reads from its environment, parsed once and frozen. */
export interface DiscoveryConfig {
  natsUrl: string[];
  redisUrl: string;
  instance: string;
  logLevel: string;
  /** Stream/KV replicas (3 on a 3-node NATS cluster). */
  replicas: number;
  /** How often time-driven changes (TTL, drains) are evaluated. */
  sweepIntervalMs: number;
  /** How often each replica checks that the stream holds every set it owns (repairs lost publishes). */
  reconcileIntervalMs: number;
  /** A replica silent for this long is considered gone; its checks move to others. */
  memberTtlMs: number;
  /** Registry events processed at once by one replica. */
  maxInFlight: number;
  /** OTLP/HTTP collector for traces; none → trace context still propagates, spans are not recorded. */
  otlpEndpoint?: string;
}

export class ConfigError extends Error {}

/** Parses the environment; throws one error naming every bad key. Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<DiscoveryConfig> {
  const problems: string[] = [];
  const duration = (key: string, fallback: string): number => {
    const raw = env[key] ?? fallback;
    const ms = parseDuration(raw);
    if (ms === undefined || ms <= 0) problems.push(`${key}="${raw}" is not a positive duration (e.g. "500ms", "2s")`);
    return ms ?? 0;
  };
  const int = (key: string, fallback: number, min: number, max: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) problems.push(`${key}="${raw}" must be a whole number from ${min} to ${max}`);
    return n;
  };
  const url = (key: string, fallback: string, schemes: string[]): string => {
    const raw = env[key] || fallback;
    for (const part of raw.split(',')) {
      try {
        const u = new URL(part.trim());
        if (!schemes.includes(u.protocol)) problems.push(`${key}="${raw}" must use ${schemes.join(' or ')}`);
      } catch {
        problems.push(`${key}="${raw}" is not a URL`);
      }
    }
    return raw;
  };
  const cfg: DiscoveryConfig = {
    natsUrl: url('NATS_URL', 'nats://127.0.0.1:4222', ['nats:', 'tls:', 'ws:', 'wss:'])
      .split(',')
      .map((s) => s.trim()),
    redisUrl: url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    instance: env.DISCOVERY_INSTANCE || `${hostname()}-${process.pid}`,
    logLevel: env.LOG_LEVEL || 'info',
    replicas: int('NATS_REPLICAS', 1, 1, 5),
    sweepIntervalMs: duration('DISCOVERY_SWEEP_INTERVAL', '1s'),
    reconcileIntervalMs: duration('DISCOVERY_RECONCILE_INTERVAL', '30s'),
    memberTtlMs: duration('DISCOVERY_MEMBER_TTL', '3s'),
    maxInFlight: int('DISCOVERY_MAX_IN_FLIGHT', 64, 1, 4096),
    otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT ? url('OTEL_EXPORTER_OTLP_ENDPOINT', '', ['http:', 'https:']) : undefined,
  };
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(cfg.logLevel))
    problems.push(`LOG_LEVEL="${cfg.logLevel}" must be one of fatal, error, warn, info, debug, trace, silent`);
  if (problems.length) throw new ConfigError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return Object.freeze(cfg);
}
