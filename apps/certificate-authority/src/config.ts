import { type CommonConfig, ConfigError, EnvReader } from '@novamesh/config';
import { parseDuration } from '@novamesh/contracts';

/** Everything the certificate authority reads from its environment, parsed once and frozen. */
export interface CaConfig extends CommonConfig {
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
  /** How often every replica prunes expired certificates (CA_PRUNE_INTERVAL, default 1h; also once at start). */
  pruneIntervalMs: number;
  /** How long a certificate's record is kept after its notAfter before it is deleted (CA_EXPIRED_CERT_RETENTION, default 24h). */
  expiredCertRetentionMs: number;
  /** How often MESH_CA is checked for having been deleted and created again (CA_STREAM_RECHECK, default 10s): the bundle and revocation list are then published anew. */
  streamRecheckMs: number;
}

export { ConfigError };

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const MIN_CERT_TTL_MS = 60_000;
const MAX_CERT_TTL_MS = 90 * 24 * 3_600_000;

/** Parses the environment; throws one error naming every bad key (never echoing the passphrase). Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<CaConfig> {
  const r = new EnvReader(env);
  const trustDomain = env.CA_TRUST_DOMAIN || 'novamesh.local';
  if (!TRUST_DOMAIN.test(trustDomain))
    r.problem(`CA_TRUST_DOMAIN="${trustDomain}" must be 1-255 lower-case letters, digits, ".", "-" or "_"`);
  const ttlRaw = env.CA_CERT_TTL || '24h';
  const certTtlMs = parseDuration(ttlRaw) ?? Number.NaN;
  if (!(certTtlMs >= MIN_CERT_TTL_MS && certTtlMs <= MAX_CERT_TTL_MS))
    r.problem(`CA_CERT_TTL="${ttlRaw}" must be a duration from 1m to 2160h (90 days), e.g. "24h"`);
  const metricsPortRaw = env.CA_METRICS_PORT || '9464';
  const metricsPort = /^\d{1,5}$/.test(metricsPortRaw) ? Number(metricsPortRaw) : Number.NaN;
  if (!(metricsPort >= 0 && metricsPort <= 65_535)) r.problem(`CA_METRICS_PORT="${metricsPortRaw}" must be a port number from 0 to 65535`);
  const metricsHost = env.CA_METRICS_HOST || '127.0.0.1';
  if (/[\s/]/.test(metricsHost)) r.problem(`CA_METRICS_HOST="${metricsHost}" must be a host name or IP address`);
  // Only say that the passphrase is unusable, never what it is.
  if (env.CA_PASSPHRASE !== undefined && env.CA_PASSPHRASE.length > 0 && env.CA_PASSPHRASE.length < 8)
    r.problem('CA_PASSPHRASE is shorter than 8 characters');
  return r.done<CaConfig>({
    ...r.common('CA_INSTANCE'),
    caDir: env.CA_DIR || '.data/ca',
    ...(env.CA_PASSPHRASE ? { passphrase: env.CA_PASSPHRASE } : {}),
    trustDomain,
    certTtlMs,
    metricsHost,
    metricsPort,
    pruneIntervalMs: r.duration('CA_PRUNE_INTERVAL', '1h'),
    expiredCertRetentionMs: r.duration('CA_EXPIRED_CERT_RETENTION', '24h'),
    streamRecheckMs: r.duration('CA_STREAM_RECHECK', '10s'),
  });
}
