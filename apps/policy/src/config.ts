import { hostname } from 'node:os';

/** Everything the policy service reads from its environment, parsed once and frozen. */
export interface PolicyConfig {
  natsUrl: string[];
  instance: string;
  logLevel: string;
  /** Stream/KV replicas (3 on a 3-node NATS cluster). */
  replicas: number;
  otlpEndpoint?: string;
}

export class ConfigError extends Error {}

/** Parses the environment; throws one error naming every bad key. Nothing else reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<PolicyConfig> {
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
  const cfg: PolicyConfig = {
    natsUrl: urls('NATS_URL', 'nats://127.0.0.1:4222', ['nats:', 'tls:', 'ws:', 'wss:']),
    instance: env.POLICY_INSTANCE || `${hostname()}-${process.pid}`,
    logLevel: env.LOG_LEVEL || 'info',
    replicas,
    otlpEndpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT ? urls('OTEL_EXPORTER_OTLP_ENDPOINT', '', ['http:', 'https:'])[0] : undefined,
  };
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(cfg.logLevel))
    problems.push(`LOG_LEVEL="${cfg.logLevel}" must be one of fatal, error, warn, info, debug, trace, silent`);
  if (problems.length) throw new ConfigError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return Object.freeze(cfg);
}
