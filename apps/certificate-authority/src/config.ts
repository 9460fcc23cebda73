import { hostname } from 'node:os';
import { parseDuration } from '@novamesh/contracts';

/** Everything the certificate authority reads from its environment, parsed once and frozen. */
export interface CaConfig {
  natsUrl: string[];
  instance: string;
  logLevel: string;
  /** Stream/KV replicas (3 on a 3-node NATS cluster). */
  replicas: number;
  otlpEndpoint?: string;
  /** Where the root and intermediate (certificates and keys) live; shared by replicas that start one after another. */
  caDir: string;
  /** Encrypts the CA keys on disk. A secret: never logged, never put in an error. */
  passphrase?: string;
  trustDomain: string;
  /** Lifetime of workload certificates (ms). */
  certTtlMs: number;
  /** Prometheus `/metrics` listener (CA_METRICS_HOST, default 127.0.0.1; CA_METRICS_PORT, default 9464, 0 = any free port). */
  metricsHost: string;
  metricsPort: number;
}

export class ConfigError extends Error {}

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const MIN_CERT_TTL_MS = 60_000;
const MAX_CERT_TTL_MS = 90 * 24 * 3_600_000;

/** Parses the environment; throws one error naming every bad key (never echoing the passphrase). Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<CaConfig> {
  const problems: string[] = [];
  const urls = (key: string, fallback: string, schemes: string[]): string[] => {
    const raw = env[key] || fallback;
    const parts = raw.split(',').map((s) => s.trim());
    for (const part of parts) {
      try {
        if (!schemes.includes(new URL(part).protocol)) problems.push(`${key}="${raw}" must use ${schemes.join(' or ')}`);
      } catch {
        problems.push(`${key}="${raw}" is not a URL`);
      }
    }
    return parts;
  };
  const replicasRaw = env.NATS_REPLICAS;
  const replicas = replicasRaw ? Number(replicasRaw) : 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5)
    problems.push(`NATS_REPLICAS="${replicasRaw}" must be a whole number from 1 to 5`);
  const trustDomain = env.CA_TRUST_DOMAIN || 'novamesh.local';
  if (!TRUST_DOMAIN.test(trustDomain))
    problems.push(`CA_TRUST_DOMAIN="${trustDomain}" must be 1-255 lower-case letters, digits, ".", "-" or "_"`);
  const ttlRaw = env.CA_CERT_TTL || '24h';
  const certTtlMs = parseDuration(ttlRaw) ?? Number.NaN;
  if (!(certTtlMs >= MIN_CERT_TTL_MS && certTtlMs <= MAX_CERT_TTL_MS))
    problems.push(`CA_CERT_TTL="${ttlRaw}" must be a duration from 1m to 2160h (90 days), e.g. "24h"`);
  const metricsPortRaw = env.CA_METRICS_PORT || '9464';
  const metricsPort = /^\d{1,5}$/.test(metricsPortRaw) ? Number(metricsPortRaw) : Number.NaN;
  if (!(metricsPort >= 0 && metricsPort <= 65_535))
    problems.push(`CA_METRICS_PORT="${metricsPortRaw}" must be a port number from 0 to 65535`);
  const metricsHost = env.CA_METRICS_HOST || '127.0.0.1';
  if (/[\s/]/.test(metricsHost)) problems.push(`CA_METRICS_HOST="${metricsHost}" must be a host name or IP address`);
  // Only say that the passphrase is unusable, never what it is.
  if (env.CA_PASSPHRASE !== undefined && env.CA_PASSPHRASE.length > 0 && env.CA_PASSPHRASE.length < 8)
    problems.push('CA_PASSPHRASE is shorter than 8 characters');
  const cfg: CaConfig = {
    natsUrl: urls('NATS_URL', 'nats://127.0.0.1:4222', ['nats:', 'tls:', 'ws:', 'wss:']),
    instance: env.CA_INSTANCE || `${hostname()}-${process.pid}`,
    logLevel: env.LOG_LEVEL || 'info',
    replicas,
    otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT ? urls('OTEL_EXPORTER_OTLP_ENDPOINT', '', ['http:', 'https:'])[0] : undefined,
    caDir: env.CA_DIR || '.data/ca',
    ...(env.CA_PASSPHRASE ? { passphrase: env.CA_PASSPHRASE } : {}),
    trustDomain,
    certTtlMs,
    metricsHost,
    metricsPort,
  };
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(cfg.logLevel))
    problems.push(`LOG_LEVEL="${cfg.logLevel}" must be one of fatal, error, warn, info, debug, trace, silent`);
  if (problems.length) throw new ConfigError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return Object.freeze(cfg);
}
